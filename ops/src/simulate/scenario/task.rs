//! Checking one `[[tasks]]` entry: its fan-out into one deployment per environment and tenant,
//! its scheduling variables, its steps and their `fail_on` targets, and the default name of each
//! deployment it makes.

use super::check::{list_or_none, Checker, Entry, FieldSpans};
use super::raw::{NameList, RawScope, RawStep, RawTarget, RawTask};
use super::{Deployment, Span, StepBehaviour, RELEASE_DEFAULT};
use cuttle_raft::sched::vars::{self, ScopedValue};
use cuttle_raft::sched::{LockScope, StepLockSpec, StepSpec, TaskSpec};
use std::collections::BTreeMap;
use toml::Spanned;

/// The variables the scheduling core reads, canonical names first, then their aliases.
fn known_variables() -> Vec<&'static str> {
    let mut names = vec![
        vars::BYPASS_DEPLOYMENT_MUTEX,
        vars::ACTION_MAX_PARALLELISM,
        vars::ACQUIRE_MAX_PARALLELISM,
        vars::TASK_CONCURRENCY_TAG,
        vars::TASK_HOLD_TARGETS,
    ];
    names.extend(vars::ALIASES.iter().map(|(alias, _)| *alias));
    names
}

impl Checker<'_> {
    pub(super) fn check_task(
        &mut self,
        index: usize,
        task: &Spanned<RawTask>,
        targets: &[Spanned<RawTarget>],
        deployments: &mut Vec<Deployment>,
    ) -> Entry {
        let whole = task.span();
        let t = task.get_ref();
        let mut entry = Entry {
            deployments: Vec::new(),
            spans: Vec::new(),
        };

        // Environments and tenants: one deployment per pair, environments outermost.
        let environments: Vec<Spanned<String>> = match (&t.environment, &t.environments) {
            (Some(env), None) => vec![env.clone()],
            (None, Some(list)) if !list.get_ref().0.is_empty() => list.get_ref().0.clone(),
            (None, Some(list)) => {
                self.error(
                    list.span(),
                    "environments is empty: name at least one environment",
                );
                return entry;
            }
            (Some(env), Some(_)) => {
                self.error(env.span(), "give environment or environments, not both");
                return entry;
            }
            (None, None) => {
                self.error(
                    whole,
                    format!("tasks[{index}] has no environment: add environment = \"...\" (or environments = [...] for one deployment per environment)"),
                );
                return entry;
            }
        };
        let tenants: Vec<Option<Spanned<String>>> = match (&t.tenant, &t.tenants) {
            (None, None) => vec![None],
            (Some(tenant), None) => vec![Some(tenant.clone())],
            (None, Some(list)) if !list.get_ref().0.is_empty() => {
                list.get_ref().0.iter().cloned().map(Some).collect()
            }
            (None, Some(list)) => {
                self.error(
                    list.span(),
                    "tenants is empty: name at least one tenant, or leave tenants out for an untenanted deployment",
                );
                return entry;
            }
            (Some(tenant), Some(_)) => {
                self.error(tenant.span(), "give tenant or tenants, not both");
                return entry;
            }
        };
        let count = environments.len() * tenants.len();
        if let (Some(name), true) = (&t.name, count > 1) {
            self.error(
                name.span(),
                format!("name is for one deployment, and this entry makes {count} (one per environment and tenant): leave name out, or split the entry"),
            );
        }

        // Variables.
        let mut variable_spans: BTreeMap<String, Span> = BTreeMap::new();
        let mut values = Vec::new();
        let known = known_variables();
        for (name, key, value) in &t.variables.0 {
            if !known.contains(&name.as_str()) {
                self.error(
                    key.clone(),
                    format!(
                        "unknown variable {name}: the simulation reads only {}",
                        known.join(", ")
                    ),
                );
                continue;
            }
            if variable_spans
                .insert(name.clone(), self.source.value_after_key(key))
                .is_some()
            {
                self.error(key.clone(), format!("variable {name} is given twice"));
                continue;
            }
            values.push(ScopedValue::new(name, value));
        }
        let variables = vars::task_variables(&values).unwrap_or_else(|e| {
            let span = variable_spans
                .get(&e.name)
                .cloned()
                .unwrap_or(whole.clone());
            self.error(span, e.to_string());
            // Go on with the defaults, to find the entry's other problems.
            vars::task_variables(&[]).expect("no variables are valid")
        });
        let variable_span = |canonical: &str| -> Option<Span> {
            variable_spans
                .iter()
                .filter(|(name, _)| vars::canonical(name) == canonical)
                .map(|(_, span)| span.clone())
                .next()
        };

        // Steps.
        if t.steps.is_empty() {
            self.error(
                whole.clone(),
                format!("tasks[{index}] has no steps: add a [[tasks.steps]] entry with name, roles and duration_ms"),
            );
            return entry;
        }
        let mut steps = Vec::new();
        let mut behaviours = Vec::new();
        let mut spans = FieldSpans::new(whole.clone());
        spans.add("project", t.project.span());
        if let Some(release) = &t.release {
            spans.add("release", release.span());
        }
        if let Some(span) = variable_span(vars::TASK_CONCURRENCY_TAG) {
            spans.add("concurrency_tag", span);
        }
        if let Some(span) = variable_span(vars::ACQUIRE_MAX_PARALLELISM) {
            spans.add("acquire_max_parallelism", span);
        }
        for (i, step) in t.steps.iter().enumerate() {
            let s = step.get_ref();
            let prefix = format!("steps[{i}]");
            spans.add(prefix.clone(), step.span());
            spans.add(format!("{prefix}.name"), s.name.span());
            spans.add_list(&format!("{prefix}.roles"), &s.roles);
            if let Some(span) = variable_span(vars::ACTION_MAX_PARALLELISM) {
                spans.add(format!("{prefix}.max_parallelism"), span);
            }
            if let Some(package) = &s.package {
                spans.add(format!("{prefix}.package"), package.span());
            }
            if let Some(lock) = &s.lock {
                spans.add(format!("{prefix}.lock"), lock.span());
                spans.add(format!("{prefix}.lock.name"), lock.get_ref().name.span());
                if let Some(capacity) = &lock.get_ref().capacity {
                    spans.add(format!("{prefix}.lock.capacity"), capacity.span());
                }
            }
            if let (Some(acquire), None) = (&s.acquire_ms, &s.package) {
                self.error(
                    acquire.span(),
                    "acquire_ms is for a step with a package: add package = \"...\" or leave acquire_ms out",
                );
            }
            self.check_fail_on(s, t, &environments, &tenants, targets);
            steps.push(StepSpec {
                name: s.name.get_ref().clone(),
                roles: s.roles.names(),
                max_parallelism: variables.action_max_parallelism,
                package: s.package.as_ref().map(|p| p.get_ref().clone()),
                lock: s.lock.as_ref().map(|l| {
                    let l = l.get_ref();
                    StepLockSpec {
                        name: l.name.get_ref().clone(),
                        scope: match l.scope {
                            RawScope::Target => LockScope::Target,
                            RawScope::Cluster => LockScope::Cluster,
                        },
                        capacity: l.capacity.as_ref().map_or(1, |c| c.get_ref().0),
                    }
                }),
            });
            behaviours.push(StepBehaviour {
                duration_ms: s.duration_ms.0,
                acquire_ms: s.acquire_ms.as_ref().map_or(0, |a| a.get_ref().0),
                fail_on: s.fail_on.names(),
            });
        }

        for environment in &environments {
            for tenant in &tenants {
                let spec = TaskSpec {
                    project: t.project.get_ref().clone(),
                    release: t
                        .release
                        .as_ref()
                        .map_or(RELEASE_DEFAULT.to_string(), |r| r.get_ref().clone()),
                    environment: environment.get_ref().clone(),
                    tenant: tenant.as_ref().map(|t| t.get_ref().clone()),
                    concurrency_tag: variables.concurrency_tag.clone(),
                    bypass: variables.bypass.clone(),
                    hold_targets: variables.hold_targets,
                    acquire_max_parallelism: variables.acquire_max_parallelism,
                    steps: steps.clone(),
                };
                let name = match (&t.name, count) {
                    (Some(name), 1) => name.get_ref().clone(),
                    _ => default_name(&spec),
                };
                let mut field_spans = FieldSpans {
                    whole: spans.whole.clone(),
                    fields: spans.fields.clone(),
                };
                field_spans.add("environment", environment.span());
                if let Some(tenant) = tenant {
                    field_spans.add("tenant", tenant.span());
                }
                entry.deployments.push(deployments.len());
                entry.spans.push(field_spans);
                deployments.push(Deployment {
                    name,
                    at_ms: t.at_ms.0,
                    spec,
                    steps: behaviours.clone(),
                });
            }
        }
        entry
    }

    /// Every `fail_on` target exists and runs the step for at least one deployment of the entry.
    fn check_fail_on(
        &mut self,
        step: &RawStep,
        task: &RawTask,
        environments: &[Spanned<String>],
        tenants: &[Option<Spanned<String>>],
        targets: &[Spanned<RawTarget>],
    ) {
        for name in &step.fail_on.0 {
            let Some(target) = targets
                .iter()
                .map(|t| t.get_ref())
                .find(|t| t.name.get_ref() == name.get_ref())
            else {
                self.error(
                    name.span(),
                    format!(
                        "fail_on names target {:?}, which is not defined: the targets are {}",
                        name.get_ref(),
                        list_or_none(targets.iter().map(|t| t.get_ref().name.get_ref().as_str()))
                    ),
                );
                continue;
            };
            let has = |list: &NameList, value: &str| list.0.iter().any(|n| n.get_ref() == value);
            let runs = environments.iter().any(|env| {
                tenants.iter().any(|tenant| {
                    has(&target.environments, env.get_ref())
                        && step.roles.0.iter().any(|r| has(&target.roles, r.get_ref()))
                        && tenant
                            .as_ref()
                            .is_none_or(|tn| has(&target.tenants, tn.get_ref()))
                })
            });
            if !runs {
                let tenant_words = if tenants.iter().any(Option::is_some) {
                    " serving the deployment's tenant"
                } else {
                    ""
                };
                self.error(
                    name.span(),
                    format!(
                        "fail_on names target {:?}, which step {:?} of {} never runs on: the step runs on targets in environment {} with role {}{tenant_words}",
                        name.get_ref(),
                        step.name.get_ref(),
                        task.project.get_ref(),
                        environments.iter().map(|e| e.get_ref().as_str()).collect::<Vec<_>>().join(" or "),
                        step.roles.names().join(" or "),
                    ),
                );
            }
        }
    }
}

/// `[tenant/]project/environment`, the shape of the default concurrency tag.
fn default_name(spec: &TaskSpec) -> String {
    match &spec.tenant {
        Some(tenant) => format!("{tenant}/{}/{}", spec.project, spec.environment),
        None => format!("{}/{}", spec.project, spec.environment),
    }
}

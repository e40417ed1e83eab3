//! The whole-file checker: turns the raw TOML into a [`Model`], reporting every problem at its place
//! in the file with its field path and what would be valid: names (empty, too long, repeated),
//! references (a project's lifecycle and variable sets, a phase's environments, a scope's
//! environments and tenants), scopes, special variables (through the core's own
//! [`vars::task_variables`]), limits (task cap, lock capacities, timeouts), and each project's
//! process run past the core's own [`TaskSpec::validate`].

use super::model::{
    ClusterSettings, Environment, Lifecycle, Model, Phase, Project, Scope, Step, Tenant,
    VariableDef, VariableSet,
};
use super::raw::{RawLifecycle, RawNamed, RawProject, RawSpec, RawStep, RawVariable};
use super::{Diagnostic, Source, Span};
use cuttle_raft::ledger::payload::STEP_TIMEOUT_MS_MAX;
use cuttle_raft::sched::ids::NAME_BYTES_MAX;
use cuttle_raft::sched::vars::{self, ScopedValue};
use cuttle_raft::sched::{
    BypassRule, LockScope, Rejection, StepLockSpec, StepSpec, TaskSpec, PARALLELISM_DEFAULT,
};
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

pub(super) struct Checker<'a> {
    source: Source<'a>,
    pub(super) diagnostics: Vec<Diagnostic>,
}

/// What references may point at.
#[derive(Default)]
struct Known {
    environments: BTreeSet<String>,
    tenants: BTreeSet<String>,
    lifecycles: BTreeSet<String>,
    variable_sets: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(source: Source<'a>) -> Checker<'a> {
        Checker {
            source,
            diagnostics: Vec::new(),
        }
    }

    fn error(&mut self, span: Span, field: impl Into<String>, message: impl Into<String>) {
        let d = self.source.diagnostic(span, field.into(), message.into());
        self.diagnostics.push(d);
    }

    fn line(&self, span: &Span) -> usize {
        self.source
            .diagnostic(span.clone(), String::new(), String::new())
            .line
    }

    pub(super) fn check(&mut self, raw: RawSpec) -> Model {
        let mut known = Known::default();
        let task_cap = raw.cluster.as_ref().and_then(|c| {
            let cap = c.get_ref().task_cap.as_ref()?;
            match u32::try_from(*cap.get_ref()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        cap.span(),
                        "cluster.task_cap",
                        format!(
                            "is {}; the task cap is a whole number from 0 (pauses admission) to {}",
                            cap.get_ref(),
                            u32::MAX
                        ),
                    );
                    None
                }
            }
        });
        known.environments = self.named_list("environments", "environment", &raw.environments);
        known.tenants = self.named_list("tenants", "tenant", &raw.tenants);
        let mut environments: Vec<Environment> = raw
            .environments
            .iter()
            .map(|e| Environment {
                name: e.get_ref().name.get_ref().clone(),
                description: e.get_ref().description.clone(),
            })
            .collect();
        let mut tenants: Vec<Tenant> = raw
            .tenants
            .iter()
            .map(|t| Tenant {
                name: t.get_ref().name.get_ref().clone(),
                description: t.get_ref().description.clone(),
            })
            .collect();

        let names = raw.lifecycles.iter().map(|l| &l.get_ref().name);
        known.lifecycles = self.unique("lifecycles", "lifecycle", names);
        let mut lifecycles: Vec<Lifecycle> = raw
            .lifecycles
            .iter()
            .enumerate()
            .map(|(i, l)| self.lifecycle(i, l.get_ref(), &known))
            .collect();

        let names = raw.variable_sets.iter().map(|s| &s.get_ref().name);
        known.variable_sets = self.unique("variable_sets", "variable set", names);
        let mut variable_sets: Vec<VariableSet> = Vec::new();
        for (i, set) in raw.variable_sets.iter().enumerate() {
            let set = set.get_ref();
            let variables = set
                .variables
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    self.variable(&format!("variable_sets[{i}].variables[{j}]"), v, &known)
                })
                .collect();
            variable_sets.push(VariableSet {
                name: set.name.get_ref().clone(),
                variables,
            });
        }

        let names = raw.projects.iter().map(|p| &p.get_ref().name);
        self.unique("projects", "project", names);
        let mut projects: Vec<Project> = raw
            .projects
            .iter()
            .enumerate()
            .map(|(i, p)| self.project(i, p, &known))
            .collect();

        environments.sort();
        environments.dedup_by(|a, b| a.name == b.name);
        tenants.sort();
        tenants.dedup_by(|a, b| a.name == b.name);
        lifecycles.sort_by(|a, b| a.name.cmp(&b.name));
        lifecycles.dedup_by(|a, b| a.name == b.name);
        variable_sets.sort_by(|a, b| a.name.cmp(&b.name));
        variable_sets.dedup_by(|a, b| a.name == b.name);
        projects.sort_by(|a, b| a.name.cmp(&b.name));
        projects.dedup_by(|a, b| a.name == b.name);
        Model {
            cluster: ClusterSettings { task_cap },
            environments,
            tenants,
            lifecycles,
            variable_sets,
            projects,
        }
    }

    /// Checks one name: not empty, not too long, no control characters.
    fn name(&mut self, field: &str, name: &Spanned<String>) -> bool {
        let n = name.get_ref();
        let problem = if n.trim().is_empty() {
            format!("{n:?} is empty; give a name")
        } else if n.len() > NAME_BYTES_MAX {
            format!(
                "{n:?} is {} bytes long; names are at most {NAME_BYTES_MAX} bytes",
                n.len()
            )
        } else if n.chars().any(char::is_control) {
            format!("{n:?} contains a control character; use printable characters")
        } else {
            return true;
        };
        self.error(name.span(), field, problem);
        false
    }

    /// Checks the names of one kind of thing (`section[i].name`): each valid, none repeated.
    /// Returns the set of names.
    fn unique<'n>(
        &mut self,
        section: &str,
        what: &str,
        names: impl Iterator<Item = &'n Spanned<String>>,
    ) -> BTreeSet<String> {
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        for (i, name) in names.enumerate() {
            let field = format!("{section}[{i}].name");
            if !self.name(&field, name) {
                continue;
            }
            if let Some(first) = seen.get(name.get_ref()) {
                let line = self.line(first);
                self.error(
                    name.span(),
                    field,
                    format!(
                        "duplicate {what} {:?}: already defined on line {line}; give every {what} its own name",
                        name.get_ref()
                    ),
                );
            } else {
                seen.insert(name.get_ref().clone(), name.span());
            }
        }
        seen.into_keys().collect()
    }

    fn named_list(
        &mut self,
        section: &str,
        what: &str,
        items: &[Spanned<RawNamed>],
    ) -> BTreeSet<String> {
        self.unique(section, what, items.iter().map(|e| &e.get_ref().name))
    }

    /// A reference to a defined thing.
    fn reference(
        &mut self,
        field: &str,
        name: &Spanned<String>,
        what: &str,
        section: &str,
        known: &BTreeSet<String>,
    ) -> bool {
        if known.contains(name.get_ref()) {
            return true;
        }
        let advice = if known.is_empty() {
            format!("define it under [[{section}]]; none is defined yet")
        } else {
            let list: Vec<&str> = known.iter().map(String::as_str).collect();
            format!(
                "define it under [[{section}]] or use one of: {}",
                list.join(", ")
            )
        };
        self.error(
            name.span(),
            field,
            format!("unknown {what} {:?}: {advice}", name.get_ref()),
        );
        false
    }

    fn lifecycle(&mut self, i: usize, raw: &RawLifecycle, known: &Known) -> Lifecycle {
        let lifecycle = raw.name.get_ref();
        let field = format!("lifecycles[{i}]");
        if raw.phases.get_ref().is_empty() {
            self.error(
                raw.phases.span(),
                format!("{field}.phases"),
                format!("lifecycle {lifecycle:?} has no phases: give at least one, as {{ name = \"QA\", environments = [\"QA\"] }}"),
            );
        }
        let names = raw.phases.get_ref().iter().map(|p| &p.get_ref().name);
        self.unique(&format!("{field}.phases"), "phase", names);
        let mut placed: BTreeMap<&str, &str> = BTreeMap::new();
        let mut phases = Vec::new();
        for (p, phase) in raw.phases.get_ref().iter().enumerate() {
            let phase = phase.get_ref();
            let field = format!("{field}.phases[{p}].environments");
            if phase.environments.get_ref().is_empty() {
                self.error(
                    phase.environments.span(),
                    field.clone(),
                    format!(
                        "phase {:?} has no environments: list at least one defined environment",
                        phase.name.get_ref()
                    ),
                );
            }
            for (e, env) in phase.environments.get_ref().iter().enumerate() {
                let field = format!("{field}[{e}]");
                if !self.reference(
                    &field,
                    env,
                    "environment",
                    "environments",
                    &known.environments,
                ) {
                    continue;
                }
                if let Some(other) = placed.get(env.get_ref().as_str()) {
                    self.error(
                        env.span(),
                        field,
                        format!(
                            "environment {:?} is already in phase {other:?} of lifecycle {lifecycle:?}: an environment belongs to one phase of a lifecycle",
                            env.get_ref()
                        ),
                    );
                } else {
                    placed.insert(env.get_ref(), phase.name.get_ref());
                }
            }
            phases.push(Phase {
                name: phase.name.get_ref().clone(),
                environments: phase
                    .environments
                    .get_ref()
                    .iter()
                    .map(|e| e.get_ref().clone())
                    .collect(),
                automatic: phase.automatic,
            });
        }
        Lifecycle {
            name: lifecycle.clone(),
            phases,
        }
    }

    fn variable(&mut self, field: &str, raw: &Spanned<RawVariable>, known: &Known) -> VariableDef {
        let v = raw.get_ref();
        self.name(&format!("{field}.name"), &v.name);
        let mut scope = Scope::default();
        if let Some(s) = &v.scope {
            let s = s.get_ref();
            for (list, dim, out) in [
                (&s.environments, "environments", &mut scope.environments),
                (&s.roles, "roles", &mut scope.roles),
                (&s.tenants, "tenants", &mut scope.tenants),
                (&s.targets, "targets", &mut scope.targets),
            ] {
                for (k, name) in list.iter().enumerate() {
                    let field = format!("{field}.scope.{dim}[{k}]");
                    let ok = match dim {
                        "environments" => self.reference(
                            &field,
                            name,
                            "environment",
                            "environments",
                            &known.environments,
                        ),
                        "tenants" => {
                            self.reference(&field, name, "tenant", "tenants", &known.tenants)
                        }
                        _ => self.name(&field, name),
                    };
                    if ok && !out.contains(name.get_ref()) {
                        out.push(name.get_ref().clone());
                    }
                }
            }
        }
        self.special(field, raw);
        VariableDef {
            name: v.name.get_ref().clone(),
            value: v.value.get_ref().clone(),
            sensitive: v.sensitive,
            scope,
        }
    }

    /// A special variable's value must be one the core accepts, in a scope it allows.
    fn special(&mut self, field: &str, raw: &Spanned<RawVariable>) {
        let v = raw.get_ref();
        if !vars::NAMES.contains(&vars::canonical(v.name.get_ref())) {
            return;
        }
        let plain = ScopedValue::new(v.name.get_ref(), v.value.get_ref());
        if let Err(e) = vars::task_variables(std::slice::from_ref(&plain)) {
            self.error(v.value.span(), format!("{field}.value"), e.to_string());
            return;
        }
        let Some(scope) = &v.scope else { return };
        let s = scope.get_ref();
        let scoped = ScopedValue {
            role: s.roles.first().map(|r| r.get_ref().clone()),
            target: s.targets.first().map(|t| t.get_ref().clone()),
            ..plain
        };
        if let Err(e) = vars::task_variables(&[scoped]) {
            self.error(scope.span(), format!("{field}.scope"), e.to_string());
        }
    }

    fn project(&mut self, i: usize, raw: &Spanned<RawProject>, known: &Known) -> Project {
        let p = raw.get_ref();
        let field = format!("projects[{i}]");
        let before = self.diagnostics.len();
        if let Some(l) = &p.lifecycle {
            self.reference(
                &format!("{field}.lifecycle"),
                l,
                "lifecycle",
                "lifecycles",
                &known.lifecycles,
            );
        }
        let mut sets: BTreeSet<&str> = BTreeSet::new();
        for (k, set) in p.variable_sets.iter().enumerate() {
            let f = format!("{field}.variable_sets[{k}]");
            if !self.reference(
                &f,
                set,
                "variable set",
                "variable_sets",
                &known.variable_sets,
            ) {
                continue;
            }
            if !sets.insert(set.get_ref()) {
                self.error(
                    set.span(),
                    f,
                    format!(
                        "variable set {:?} is listed twice: list each set once (a later set wins over an earlier one)",
                        set.get_ref()
                    ),
                );
            }
        }
        let mut variables = Vec::new();
        for (k, v) in p.variables.iter().enumerate() {
            let f = format!("{field}.variables[{k}]");
            let def = self.variable(&f, v, known);
            if !p.tenanted {
                if let Some(scope) = &v.get_ref().scope {
                    if let Some(first) = scope.get_ref().tenants.first() {
                        self.error(
                            first.span(),
                            format!("{f}.scope.tenants"),
                            format!(
                                "project {:?} is not tenanted, so a value scoped to tenants never applies: set tenanted = true on the project or remove the tenant scope",
                                p.name.get_ref()
                            ),
                        );
                    }
                }
            }
            variables.push(def);
        }
        let steps = self.steps(&field, raw);
        let project = Project {
            name: p.name.get_ref().clone(),
            lifecycle: p.lifecycle.as_ref().map(|l| l.get_ref().clone()),
            tenanted: p.tenanted,
            variable_sets: p
                .variable_sets
                .iter()
                .map(|s| s.get_ref().clone())
                .collect(),
            variables,
            steps,
        };
        if self.diagnostics.len() == before {
            self.with_core(&field, raw, &project);
        }
        project
    }

    fn steps(&mut self, field: &str, raw: &Spanned<RawProject>) -> Vec<Step> {
        let p = raw.get_ref();
        if p.steps.is_empty() {
            self.error(
                p.name.span(),
                format!("{field}.steps"),
                format!(
                    "project {:?} has no steps: add at least one [[projects.steps]] with name, roles and script",
                    p.name.get_ref()
                ),
            );
        }
        let names = p.steps.iter().map(|s| &s.get_ref().name);
        self.unique(&format!("{field}.steps"), "step", names);
        p.steps
            .iter()
            .enumerate()
            .map(|(j, s)| self.step(&format!("{field}.steps[{j}]"), s.get_ref()))
            .collect()
    }

    fn step(&mut self, field: &str, s: &RawStep) -> Step {
        if s.roles.get_ref().is_empty() {
            self.error(
                s.roles.span(),
                format!("{field}.roles"),
                "is empty: give the roles of the targets the step runs on, as roles = [\"web\"]",
            );
        }
        for (k, role) in s.roles.get_ref().iter().enumerate() {
            self.name(&format!("{field}.roles[{k}]"), role);
        }
        if let Some(package) = &s.package {
            self.name(&format!("{field}.package"), package);
        }
        let mut timeout_ms = 0;
        if let Some(t) = &s.timeout_ms {
            match u64::try_from(*t.get_ref()) {
                Ok(n) if n <= STEP_TIMEOUT_MS_MAX => timeout_ms = n,
                _ => self.error(
                    t.span(),
                    format!("{field}.timeout_ms"),
                    format!(
                        "is {}; give 0 (no limit) to {STEP_TIMEOUT_MS_MAX} ms (a week)",
                        t.get_ref()
                    ),
                ),
            }
        }
        let lock = s.lock.as_ref().map(|l| {
            let l = l.get_ref();
            self.name(&format!("{field}.lock.name"), &l.name);
            let scope = match l.scope.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
                None | Some(("target", _)) => LockScope::Target,
                Some(("cluster", _)) => LockScope::Cluster,
                Some((other, span)) => {
                    self.error(
                        span,
                        format!("{field}.lock.scope"),
                        format!("is {other:?}: use \"target\" (one lock per target) or \"cluster\" (one lock for the cluster)"),
                    );
                    LockScope::Target
                }
            };
            let mut capacity = 1;
            if let Some(c) = &l.capacity {
                match u32::try_from(*c.get_ref()) {
                    Ok(n) if n >= 1 => capacity = n,
                    _ => self.error(
                        c.span(),
                        format!("{field}.lock.capacity"),
                        format!(
                            "is {}; a lock's capacity is a whole number from 1 to {}",
                            c.get_ref(),
                            u32::MAX
                        ),
                    ),
                }
            }
            StepLockSpec {
                name: l.name.get_ref().clone(),
                scope,
                capacity,
            }
        });
        Step {
            name: s.name.get_ref().clone(),
            roles: s
                .roles
                .get_ref()
                .iter()
                .map(|r| r.get_ref().clone())
                .collect(),
            script: s.script.clone(),
            package: s.package.as_ref().map(|p| p.get_ref().clone()),
            acquire_script: s.acquire_script.clone(),
            timeout_ms,
            lock,
        }
    }

    /// Whatever else the core would refuse in the project's process (step counts, role counts,
    /// one capacity per lock), at its place in the file.
    fn with_core(&mut self, field: &str, raw: &Spanned<RawProject>, project: &Project) {
        let spec = TaskSpec {
            project: project.name.clone(),
            release: "0".into(),
            environment: "spec-check".into(),
            tenant: None,
            concurrency_tag: None,
            bypass: BypassRule::default(),
            hold_targets: false,
            acquire_max_parallelism: PARALLELISM_DEFAULT,
            steps: project
                .steps
                .iter()
                .map(|s| StepSpec {
                    name: s.name.clone(),
                    roles: s.roles.clone(),
                    max_parallelism: PARALLELISM_DEFAULT,
                    package: s.package.clone(),
                    lock: s.lock.clone(),
                })
                .collect(),
        };
        let Err(rejection) = spec.validate() else {
            return;
        };
        let p = raw.get_ref();
        let (path, problem) = match rejection {
            Rejection::Invalid { field, problem } => (field, problem),
            other => (String::new(), other.to_string()),
        };
        // Point at the step named in the path, if any.
        let span = path
            .strip_prefix("steps[")
            .and_then(|rest| rest.split(']').next())
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| p.steps.get(n))
            .map_or(p.name.span(), |s| s.get_ref().name.span());
        let full = if path.is_empty() {
            field.to_string()
        } else {
            format!("{field}.{path}")
        };
        self.error(span, full, problem);
    }
}

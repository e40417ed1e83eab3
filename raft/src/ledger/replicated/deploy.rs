//! Releases and deployments as the state machine applies them: creating a release (and its
//! automatic first deployments), deploying a release to an environment for some tenants, and the
//! automatic promotion that a success triggers. Every request either queues all its tasks or none.

use super::{Replicated, Request};
use crate::ledger::lifecycle::{after_success, check_deploy, on_release_created};
use crate::ledger::model::Model;
use crate::ledger::releases::{Deployment, Releases};
use crate::ledger::resolve::{build, Built, ResolveError};
use crate::sched::command::{Command, Event, Input, Rejection};
use crate::sched::ids::TaskId;

/// Which tenants a deployment request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tenants<'a> {
    /// The ones listed (none for an untenanted project).
    Listed(&'a [String]),
    /// Every tenant of the model.
    All,
}

/// A promotion a success asked for: deploy `deployment`'s release to these environments, for its
/// tenant, because `after` succeeded.
pub(super) struct Promotion {
    after: TaskId,
    deployment: Deployment,
    environments: Vec<String>,
}

fn invalid(field: &str, problem: String) -> Rejection {
    Rejection::Invalid {
        field: field.into(),
        problem,
    }
}

fn rejection(error: ResolveError) -> Rejection {
    let field = match &error {
        ResolveError::UnknownProject(_) => "project",
        ResolveError::UnknownEnvironment(_) => "environment",
        ResolveError::UnknownTenant(_)
        | ResolveError::TenantRequired(_)
        | ResolveError::TenantNotAllowed(_) => "tenant",
        ResolveError::Variable(_) => "variables",
        ResolveError::Rejected(r) => return r.clone(),
    };
    invalid(field, error.to_string())
}

/// The tenants one deployment request deploys to: `None` alone for an untenanted project.
fn tenants(
    model: &Model,
    project: &str,
    tenants: Tenants,
) -> Result<Vec<Option<String>>, Rejection> {
    let p = model.project(project).ok_or_else(|| {
        invalid(
            "project",
            format!("unknown project {project:?}: apply a spec that defines it"),
        )
    })?;
    match (p.tenanted, tenants) {
        (false, Tenants::Listed([])) => Ok(vec![None]),
        (false, _) => Err(invalid(
            "tenant",
            format!("project {project} is not tenanted: deploy it without tenants"),
        )),
        (true, Tenants::All) if model.tenants.is_empty() => Err(invalid(
            "tenant",
            "the spec defines no tenants: add [[tenants]] to the spec first".into(),
        )),
        (true, Tenants::All) => Ok(model.tenants.iter().map(|t| Some(t.name.clone())).collect()),
        (true, Tenants::Listed([])) => Err(invalid(
            "tenant",
            format!("project {project} is tenanted: name the tenants to deploy to, or all of them"),
        )),
        (true, Tenants::Listed(names)) => {
            let mut out: Vec<Option<String>> = Vec::new();
            for name in names {
                if model.tenant(name).is_none() {
                    return Err(invalid(
                        "tenant",
                        format!("unknown tenant {name:?}: apply a spec that defines it"),
                    ));
                }
                if !out.iter().any(|t| t.as_deref() == Some(name)) {
                    out.push(Some(name.clone()));
                }
            }
            Ok(out)
        }
    }
}

/// Builds the tasks of deploying `release` to each of `environments` for each of `tenants`,
/// checking the lifecycle (unless `automatic`: the rules chose these environments themselves).
fn plan(
    model: &Model,
    releases: &Releases,
    project: &str,
    release: &str,
    environments: &[String],
    tenants: &[Option<String>],
    automatic: bool,
) -> Result<Vec<(Built, Deployment)>, Rejection> {
    let p = model.project(project).ok_or_else(|| {
        invalid(
            "project",
            format!("unknown project {project:?}: apply a spec that defines it"),
        )
    })?;
    let mut out = Vec::new();
    for tenant in tenants {
        for environment in environments {
            if !automatic {
                let kept = releases.release(project, release).ok_or_else(|| {
                    invalid(
                        "release",
                        format!(
                            "project {project} has no release {release:?}: create it first (cuttle release create --project {project} --version {release})"
                        ),
                    )
                })?;
                let succeeded = kept.succeeded_for(tenant.as_deref());
                check_deploy(model, p, release, environment, &succeeded)
                    .map_err(|e| invalid("environment", e.to_string()))?;
            }
            let built = build(model, project, release, environment, tenant.as_deref())
                .map_err(rejection)?;
            out.push((
                built,
                Deployment {
                    project: project.into(),
                    release: release.into(),
                    environment: environment.clone(),
                    tenant: tenant.clone(),
                },
            ));
        }
    }
    Ok(out)
}

impl Replicated {
    /// Queues every planned task, after checking that the core accepts them all.
    fn queue(
        &mut self,
        now_ms: u64,
        planned: Vec<(Built, Deployment)>,
        note: Option<String>,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let specs: Vec<_> = planned.iter().map(|(b, _)| b.spec.clone()).collect();
        self.scheduler.check_submissions(&specs)?;
        let limit = self.ledger.task_log_bytes_max;
        for (built, deployment) in planned {
            let mut scratch = Vec::new();
            self.scheduler
                .apply(
                    Input {
                        now_ms,
                        command: Command::SubmitTask(built.spec),
                    },
                    &mut scratch,
                )
                .expect("check_submissions accepted the task");
            let task = scratch
                .iter()
                .find_map(|e| match e {
                    Event::TaskQueued { task } => Some(*task),
                    _ => None,
                })
                .expect("an accepted submission queues its task");
            events.append(&mut scratch);
            self.ledger.payloads.insert(task, built.payload);
            if !built.per_target.is_empty() {
                self.ledger.per_target.insert(task, built.per_target);
            }
            if let Some(note) = &note {
                self.ledger
                    .logs
                    .entry(task)
                    .or_default()
                    .system(now_ms, None, note.clone(), limit);
            }
            self.ledger.releases.started(task, deployment);
        }
        Ok(())
    }

    /// Applies [`Request::CreateRelease`] and [`Request::Deploy`].
    pub(super) fn apply_release_request(
        &mut self,
        now_ms: u64,
        request: Request,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        match request {
            Request::CreateRelease { project, version } => {
                let model = &self.ledger.model;
                let p = model.project(&project).ok_or_else(|| {
                    invalid(
                        "project",
                        format!("unknown project {project:?}: apply a spec that defines it"),
                    )
                })?;
                self.ledger.releases.check_new(&project, &version)?;
                let environments = on_release_created(model, p);
                let tenants = if !p.tenanted {
                    vec![None]
                } else {
                    model.tenants.iter().map(|t| Some(t.name.clone())).collect()
                };
                let planned = plan(
                    model,
                    &self.ledger.releases,
                    &project,
                    &version,
                    &environments,
                    &tenants,
                    true,
                )?;
                let specs: Vec<_> = planned.iter().map(|(b, _)| b.spec.clone()).collect();
                self.scheduler.check_submissions(&specs)?;
                let note = format!(
                    "[cuttle] queued automatically: release {version} was created and the first phase of its lifecycle is automatic"
                );
                self.ledger.releases.create(&project, &version, now_ms);
                self.queue(now_ms, planned, Some(note), events)
                    .expect("the core accepted every planned deployment");
                Ok(())
            }
            Request::Deploy {
                project,
                release,
                environment,
                tenants: listed,
                all_tenants,
            } => {
                let model = &self.ledger.model;
                let choice = if all_tenants {
                    if !listed.is_empty() {
                        return Err(invalid(
                            "tenants",
                            "name tenants or ask for all of them, not both".into(),
                        ));
                    }
                    Tenants::All
                } else {
                    Tenants::Listed(&listed)
                };
                let tenants = tenants(model, &project, choice)?;
                let planned = plan(
                    model,
                    &self.ledger.releases,
                    &project,
                    &release,
                    std::slice::from_ref(&environment),
                    &tenants,
                    false,
                )?;
                self.queue(now_ms, planned, None, events)
            }
            _ => unreachable!("only release requests come here"),
        }
    }

    /// Records the end of a task for its release; returns the automatic deployments it triggers.
    pub(super) fn release_task_ended(
        &mut self,
        task: TaskId,
        succeeded: bool,
    ) -> Option<Promotion> {
        let (deployment, before) = self.ledger.releases.ended(task, succeeded)?;
        let model = &self.ledger.model;
        let project = model.project(&deployment.project)?;
        let environments = after_success(model, project, &before, &deployment.environment);
        (!environments.is_empty()).then_some(Promotion {
            after: task,
            deployment,
            environments,
        })
    }

    /// Queues a promotion's deployments; when they cannot be queued, notes why on the release and
    /// in the log of the task whose success asked for them.
    pub(super) fn promote(&mut self, now_ms: u64, promotion: Promotion, events: &mut Vec<Event>) {
        let d = &promotion.deployment;
        let planned = plan(
            &self.ledger.model,
            &self.ledger.releases,
            &d.project,
            &d.release,
            &promotion.environments,
            std::slice::from_ref(&d.tenant),
            true,
        );
        let note = format!(
            "[cuttle] queued automatically: release {} reached {} after task {} succeeded in {}",
            d.release,
            promotion.environments.join(", "),
            promotion.after.0,
            d.environment
        );
        let queued = planned.and_then(|p| self.queue(now_ms, p, Some(note), events));
        if let Err(why) = queued {
            let text = format!(
                "[cuttle] could not deploy release {} to {} automatically: {why}",
                d.release,
                promotion.environments.join(", ")
            );
            self.ledger
                .releases
                .promotion_failed(&d.project, &d.release, why.to_string());
            let limit = self.ledger.task_log_bytes_max;
            if let Some(log) = self.ledger.logs.get_mut(&promotion.after) {
                log.system(now_ms, None, text, limit);
            }
        }
    }
}

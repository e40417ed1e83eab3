//! Releases and the deployments made of them: which releases each project has, where each release
//! (per tenant) has succeeded, and which running tasks are deployments of a release, so that a
//! success moves the release along its lifecycle. Pure data; [`super::replicated`] applies the
//! requests that change it and queues the tasks.

use crate::sched::ids::TaskId;
use crate::sched::Rejection;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Most releases kept per project: creating one more forgets the oldest (its deployments keep
/// running; it can no longer be deployed).
pub const RELEASES_PER_PROJECT_MAX: usize = 1_000;
/// Longest release version.
pub const VERSION_BYTES_MAX: usize = 128;

/// One release of a project.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Its version, unique in its project (`1.4.2`).
    pub version: String,
    /// When it was created, on the leader's clock.
    pub created_ms: u64,
    /// The environments where it has a successful deployment, per tenant (`None` for an
    /// untenanted project).
    pub succeeded: BTreeMap<Option<String>, BTreeSet<String>>,
    /// Deployments queued of it so far, by hand or automatically.
    pub deployments: u64,
    /// Why the last automatic deployment of it could not be queued, if one could not.
    pub promotion_error: Option<String>,
}

impl Release {
    /// The environments where it succeeded for `tenant`.
    pub fn succeeded_for(&self, tenant: Option<&str>) -> BTreeSet<String> {
        self.succeeded
            .get(&tenant.map(String::from))
            .cloned()
            .unwrap_or_default()
    }
}

/// A running task that deploys a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The project.
    pub project: String,
    /// The release's version.
    pub release: String,
    /// The environment.
    pub environment: String,
    /// The tenant, for a tenanted project.
    pub tenant: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ProjectReleases {
    /// Versions, oldest first.
    order: VecDeque<String>,
    by_version: BTreeMap<String, Release>,
}

/// Every project's releases and the deployments in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    projects: BTreeMap<String, ProjectReleases>,
    /// Tasks deploying a release that have not ended.
    active: BTreeMap<TaskId, Deployment>,
}

impl Releases {
    /// Checks a new release's version.
    pub fn check_new(&self, project: &str, version: &str) -> Result<(), Rejection> {
        let problem = if version.is_empty() {
            Some("is empty; give a version such as 1.0.0".to_string())
        } else if version.len() > VERSION_BYTES_MAX {
            Some(format!(
                "is {} bytes long; versions are at most {VERSION_BYTES_MAX} bytes",
                version.len()
            ))
        } else if version.chars().any(|c| c.is_control() || c.is_whitespace()) {
            Some("contains a space or a control character; use a version such as 1.0.0".into())
        } else if self.release(project, version).is_some() {
            Some(format!(
                "already exists in project {project}; give a new version, or deploy that release"
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(Rejection::Invalid {
                field: "version".into(),
                problem: format!("{version:?} {problem}"),
            }),
            None => Ok(()),
        }
    }

    /// Records a new release (checked with [`Releases::check_new`]); forgets the project's oldest
    /// past the limit.
    pub fn create(&mut self, project: &str, version: &str, now_ms: u64) {
        debug_assert!(self.check_new(project, version).is_ok());
        let releases = self.projects.entry(project.to_string()).or_default();
        releases.order.push_back(version.to_string());
        releases.by_version.insert(
            version.to_string(),
            Release {
                version: version.to_string(),
                created_ms: now_ms,
                ..Release::default()
            },
        );
        while releases.order.len() > RELEASES_PER_PROJECT_MAX {
            let old = releases.order.pop_front().expect("longer than the limit");
            releases.by_version.remove(&old);
        }
        assert_eq!(releases.order.len(), releases.by_version.len());
    }

    /// A release.
    pub fn release(&self, project: &str, version: &str) -> Option<&Release> {
        self.projects.get(project)?.by_version.get(version)
    }

    fn release_mut(&mut self, project: &str, version: &str) -> Option<&mut Release> {
        self.projects.get_mut(project)?.by_version.get_mut(version)
    }

    /// A project's releases, oldest first.
    pub fn of_project(&self, project: &str) -> impl Iterator<Item = &Release> {
        self.projects
            .get(project)
            .into_iter()
            .flat_map(|p| p.order.iter().filter_map(|v| p.by_version.get(v)))
    }

    /// Every project with releases, by name.
    pub fn projects(&self) -> impl Iterator<Item = &str> {
        self.projects.keys().map(String::as_str)
    }

    /// Records that `task` deploys a release.
    pub fn started(&mut self, task: TaskId, deployment: Deployment) {
        if let Some(release) = self.release_mut(&deployment.project, &deployment.release) {
            release.deployments += 1;
        }
        self.active.insert(task, deployment);
    }

    /// The deployment `task` is, while it has not ended.
    pub fn deployment(&self, task: TaskId) -> Option<&Deployment> {
        self.active.get(&task)
    }

    /// Records the end of `task`: on success, where its release now stands. Returns the
    /// deployment and the environments where its release had succeeded before, when `task`
    /// deployed a release that is still kept and it succeeded.
    pub fn ended(
        &mut self,
        task: TaskId,
        succeeded: bool,
    ) -> Option<(Deployment, BTreeSet<String>)> {
        let deployment = self.active.remove(&task)?;
        if !succeeded {
            return None;
        }
        let release = self.release_mut(&deployment.project, &deployment.release)?;
        let envs = release
            .succeeded
            .entry(deployment.tenant.clone())
            .or_default();
        let before = envs.clone();
        envs.insert(deployment.environment.clone());
        Some((deployment, before))
    }

    /// Notes why an automatic deployment of a release could not be queued.
    pub fn promotion_failed(&mut self, project: &str, version: &str, why: String) {
        if let Some(release) = self.release_mut(project, version) {
            release.promotion_error = Some(why);
        }
    }

    /// Deployments in flight.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(env: &str, tenant: Option<&str>) -> Deployment {
        Deployment {
            project: "web".into(),
            release: "1.0".into(),
            environment: env.into(),
            tenant: tenant.map(String::from),
        }
    }

    #[test]
    fn versions_are_checked() {
        let mut r = Releases::default();
        assert!(r.check_new("web", "").is_err());
        assert!(r.check_new("web", "1 0").is_err());
        assert!(r
            .check_new("web", &"9".repeat(VERSION_BYTES_MAX + 1))
            .is_err());
        r.create("web", "1.0", 5);
        let err = r.check_new("web", "1.0").unwrap_err().to_string();
        assert!(err.contains("already exists in project web"), "{err}");
        assert!(r.check_new("api", "1.0").is_ok());
    }

    #[test]
    fn successes_are_recorded_per_tenant_and_failures_not() {
        let mut r = Releases::default();
        r.create("web", "1.0", 0);
        r.started(TaskId(1), deployment("QA", Some("acme")));
        r.started(TaskId(2), deployment("QA", Some("zen")));
        let (d, before) = r.ended(TaskId(1), true).unwrap();
        assert_eq!((d.environment.as_str(), before.len()), ("QA", 0));
        assert!(r.ended(TaskId(2), false).is_none());
        let release = r.release("web", "1.0").unwrap();
        assert_eq!(release.succeeded_for(Some("acme")).len(), 1);
        assert!(release.succeeded_for(Some("zen")).is_empty());
        assert_eq!(release.deployments, 2);
        assert_eq!(r.active_len(), 0);
    }

    #[test]
    fn the_oldest_release_is_forgotten_past_the_limit() {
        let mut r = Releases::default();
        for i in 0..=RELEASES_PER_PROJECT_MAX {
            r.create("web", &i.to_string(), i as u64);
        }
        assert!(r.release("web", "0").is_none());
        assert!(r.release("web", "1").is_some());
        assert_eq!(r.of_project("web").count(), RELEASES_PER_PROJECT_MAX);
    }
}

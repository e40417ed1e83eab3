//! Releases, deployments and automatic promotion as the replicated state applies them: the
//! lifecycle rules of seed 002 (an automatic QA -> Staging chain, a manual Production), per-tenant
//! progress, all-or-nothing requests, and variables resolved per target.

use cuttle_raft::ledger::model::{
    Environment, Lifecycle, Model, Phase, Project, Scope, Step, Tenant, VariableDef,
};
use cuttle_raft::ledger::{Replicated, Request};
use cuttle_raft::sched::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

fn phase(name: &str, envs: &[&str], automatic: bool) -> Phase {
    Phase {
        name: name.into(),
        environments: names(envs),
        automatic,
    }
}

fn project(name: &str, tenanted: bool, lifecycle: Option<&str>) -> Project {
    Project {
        name: name.into(),
        lifecycle: lifecycle.map(String::from),
        tenanted,
        variable_sets: Vec::new(),
        variables: Vec::new(),
        steps: vec![Step {
            name: "deploy".into(),
            roles: names(&["web"]),
            script: "echo #{Port}".into(),
            package: None,
            acquire_script: String::new(),
            timeout_ms: 0,
            lock: None,
        }],
    }
}

fn model() -> Model {
    let mut web = project("web", false, Some("auto"));
    web.variables = vec![
        VariableDef {
            name: "Port".into(),
            value: "80".into(),
            ..VariableDef::default()
        },
        VariableDef {
            name: "Port".into(),
            value: "8080".into(),
            sensitive: false,
            scope: Scope {
                targets: names(&["s2"]),
                ..Scope::default()
            },
        },
    ];
    Model {
        environments: ["Production", "QA", "Staging"]
            .into_iter()
            .map(|name| Environment {
                name: name.into(),
                description: None,
            })
            .collect(),
        tenants: ["acme", "zen"]
            .into_iter()
            .map(|name| Tenant {
                name: name.into(),
                description: None,
            })
            .collect(),
        lifecycles: vec![Lifecycle {
            name: "auto".into(),
            phases: vec![
                phase("QA", &["QA"], true),
                phase("Staging", &["Staging"], true),
                phase("Production", &["Production"], false),
            ],
        }],
        projects: vec![
            project("free", false, None),
            project("shop", true, Some("auto")),
            web,
        ],
        ..Model::default()
    }
}

struct Cluster {
    state: Replicated,
    now_ms: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let mut c = Cluster {
            state: Replicated::default(),
            now_ms: 1_000,
        };
        c.ok(Request::ApplySpec(model()));
        let targets = [
            ("q1", "QA", &["acme", "zen"][..]),
            ("s1", "Staging", &["acme", "zen"]),
            ("s2", "Staging", &["acme", "zen"]),
            ("p1", "Production", &["acme", "zen"]),
        ];
        for (name, env, tenants) in targets {
            c.ok(Request::Core(Command::UpsertTarget(TargetSpec {
                name: name.into(),
                environments: names(&[env]),
                roles: names(&["web"]),
                tenants: names(tenants),
                capacity: 4,
            })));
        }
        c
    }

    fn apply(&mut self, request: Request) -> Result<Vec<Event>, Rejection> {
        self.now_ms += 1;
        let mut events = Vec::new();
        self.state.apply(self.now_ms, request, &mut events)?;
        Ok(events)
    }

    fn ok(&mut self, request: Request) -> Vec<Event> {
        self.apply(request).expect("accepted")
    }

    fn deploy(
        &mut self,
        project: &str,
        env: &str,
        tenants: &[&str],
    ) -> Result<Vec<TaskId>, Rejection> {
        let events = self.apply(Request::Deploy {
            project: project.into(),
            release: "1.0".into(),
            environment: env.into(),
            tenants: names(tenants),
            all_tenants: false,
        })?;
        Ok(queued(&events))
    }

    /// Runs every active unit to the end with `exit_code`, until none is left.
    fn run_all(&mut self, exit_code: i32) {
        loop {
            let active: Vec<(UnitId, u32)> = self
                .state
                .scheduler
                .units()
                .filter(|u| u.is_active())
                .map(|u| (u.id, u.attempt))
                .collect();
            if active.is_empty() {
                return;
            }
            for (unit, attempt) in active {
                self.ok(Request::Core(Command::UnitStarted { unit, attempt }));
                self.ok(Request::Core(Command::UnitFinished {
                    unit,
                    attempt,
                    exit_code,
                }));
            }
        }
    }

    /// Environments of the tasks queued so far, with their tenants, in id order.
    fn tasks(&self) -> Vec<(String, Option<String>)> {
        let names = self.state.scheduler.symbols();
        self.state
            .scheduler
            .tasks()
            .map(|t| {
                (
                    names.name(t.environment).to_string(),
                    t.tenant.map(|s| names.name(s).to_string()),
                )
            })
            .collect()
    }
}

fn queued(events: &[Event]) -> Vec<TaskId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TaskQueued { task } => Some(*task),
            _ => None,
        })
        .collect()
}

fn create(c: &mut Cluster, project: &str) -> Vec<TaskId> {
    queued(&c.ok(Request::CreateRelease {
        project: project.into(),
        version: "1.0".into(),
    }))
}

#[test]
fn seed_002_a_release_walks_the_automatic_phases_and_stops_before_a_manual_one() {
    let mut c = Cluster::new();
    assert_eq!(create(&mut c, "web").len(), 1, "QA is automatic");
    c.run_all(0);
    let envs: Vec<String> = c.tasks().into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        envs,
        ["QA", "Staging"],
        "success in QA promotes to Staging, Production is manual"
    );
    let release = c.state.releases().release("web", "1.0").unwrap();
    assert_eq!(
        release.succeeded_for(None).into_iter().collect::<Vec<_>>(),
        ["QA", "Staging"]
    );
    assert_eq!(c.deploy("web", "Production", &[]).unwrap().len(), 1);
}

#[test]
fn deploying_ahead_of_the_lifecycle_is_refused_with_what_to_do() {
    let mut c = Cluster::new();
    create(&mut c, "web");
    let err = c.deploy("web", "Production", &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid environment: release 1.0 of web has not reached Production: deploy it to QA first (phase QA)"
    );
    let err = c.deploy("web", "Nowhere", &[]).unwrap_err().to_string();
    assert!(
        err.contains("environment Nowhere is not in lifecycle auto"),
        "{err}"
    );
    let err = c
        .apply(Request::Deploy {
            project: "web".into(),
            release: "9.9".into(),
            environment: "QA".into(),
            tenants: vec![],
            all_tenants: false,
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("project web has no release \"9.9\": create it first"),
        "{err}"
    );
}

#[test]
fn a_failure_does_not_promote() {
    let mut c = Cluster::new();
    create(&mut c, "web");
    c.run_all(1);
    assert_eq!(c.tasks().len(), 1, "nothing follows a failed QA deployment");
    assert!(c.deploy("web", "Staging", &[]).is_err());
    // Deploying to QA again is allowed, and its success promotes.
    c.deploy("web", "QA", &[]).unwrap();
    c.run_all(0);
    assert_eq!(c.tasks().last().unwrap().0, "Staging");
}

#[test]
fn tenants_progress_on_their_own() {
    let mut c = Cluster::new();
    assert_eq!(create(&mut c, "shop").len(), 2, "QA for acme and zen");
    // Only acme's QA deployment succeeds.
    let acme_unit = c
        .state
        .scheduler
        .units()
        .find(|u| {
            let task = c.state.scheduler.task(u.task).unwrap();
            c.state.scheduler.symbols().name(task.tenant.unwrap()) == "acme"
        })
        .map(|u| (u.id, u.attempt))
        .unwrap();
    c.ok(Request::Core(Command::UnitStarted {
        unit: acme_unit.0,
        attempt: acme_unit.1,
    }));
    c.ok(Request::Core(Command::UnitFinished {
        unit: acme_unit.0,
        attempt: acme_unit.1,
        exit_code: 0,
    }));
    let last = c.tasks().last().cloned().unwrap();
    assert_eq!(last, ("Staging".to_string(), Some("acme".to_string())));
    assert!(
        c.deploy("shop", "Staging", &["zen"]).is_err(),
        "zen has not passed QA"
    );
}

#[test]
fn a_request_for_several_tenants_queues_all_or_none() {
    let mut c = Cluster::new();
    c.ok(Request::CreateRelease {
        project: "free".into(),
        version: "1.0".into(),
    });
    let err = c.deploy("shop", "QA", &["acme"]).unwrap_err().to_string();
    assert!(err.contains("project shop has no release"), "{err}");
    create(&mut c, "shop");
    let before = c.tasks().len();
    let err = c
        .deploy("shop", "QA", &["acme", "nobody"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown tenant \"nobody\""), "{err}");
    assert_eq!(c.tasks().len(), before, "nothing was queued");
    let err = c.deploy("shop", "QA", &[]).unwrap_err().to_string();
    assert!(err.contains("project shop is tenanted"), "{err}");
    let err = c.deploy("free", "QA", &["acme"]).unwrap_err().to_string();
    assert!(err.contains("project free is not tenanted"), "{err}");
    let all = c
        .apply(Request::Deploy {
            project: "shop".into(),
            release: "1.0".into(),
            environment: "QA".into(),
            tenants: vec![],
            all_tenants: true,
        })
        .unwrap();
    assert_eq!(queued(&all).len(), 2);
}

#[test]
fn a_project_without_a_lifecycle_deploys_anywhere_and_nothing_by_itself() {
    let mut c = Cluster::new();
    assert!(create(&mut c, "free").is_empty());
    assert_eq!(c.deploy("free", "Production", &[]).unwrap().len(), 1);
    let err = c
        .apply(Request::CreateRelease {
            project: "free".into(),
            version: "1.0".into(),
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists in project free"), "{err}");
}

#[test]
fn a_target_scoped_value_reaches_only_its_target() {
    let mut c = Cluster::new();
    create(&mut c, "web");
    c.run_all(0);
    let staging = *c.state.scheduler.tasks().map(|t| &t.id).last().unwrap();
    let port_on = |c: &Cluster, target: &str| {
        let id = c.state.scheduler.target_id(target).unwrap();
        c.state
            .variables_for(staging, id)
            .into_iter()
            .find(|v| v.name == "Port")
            .unwrap()
            .value
    };
    assert_eq!(port_on(&c, "s1"), "80");
    assert_eq!(port_on(&c, "s2"), "8080");
}

//! The clients of a run: threads that submit deployments, cancel some, and run `cuttle lock run`
//! contenders, recording every operation's invocation and completion. Each thread draws its
//! choices from its own seeded generator; the interleaving is the machine's.
//!
//! The deployments (every one on environment Production, roles `r0`..`r2` or `web`):
//!
//! | project | bypass | tag | steps |
//! |---|---|---|---|
//! | `alpha` | no | `alpha/Production` | deploy |
//! | `beta` | yes | `beta/Production` | migrate (step lock `db`, target, 1), deploy |
//! | `gamma` (tenants t1..t3) | yes | `tN/gamma/Production` | deploy |
//! | `delta` | no | `chaos-shared` (explicit) | deploy |
//! | `epsilon` | yes | `chaos-shared` (explicit) | deploy |
//! | `zeta` | yes | `zeta/Production` | deploy (step lock `mig`, cluster, 2) |
//!
//! Lock contenders take `chaos-a` (capacity 1) or `mig` (capacity 2, shared with zeta's step).
//! Every script stamps its start and end (or SIGTERM) on its target's stamp file with the facts
//! the checkers need: exclusive or not, the tag, the lock.

use crate::history::{now_us, Event, Op, OpPhase, Recorder};
use crate::procs::Clients;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A client command is given up (outcome unknown) after this long.
pub const OP_TIMEOUT: Duration = Duration::from_secs(20);
/// A lock contender's whole run is given up after this long.
pub const LOCK_OP_TIMEOUT: Duration = Duration::from_secs(40);
/// Acknowledged tasks remembered for cancels.
pub const TASKS_REMEMBERED_MAX: usize = 10_000;

/// The stamp helper every unit script starts with; `D`, `M`, `G`, `L` are set before it.
const STAMP_FN: &str = r#"st() { printf '%s %s %s %s %s %s %s %s %s %s\n' "$1" "$CUTTLE_TARGET" "$CUTTLE_TASK_ID" "$CUTTLE_UNIT_ID" "$CUTTLE_UNIT_ATTEMPT" "$CUTTLE_FENCING_TOKEN" "$M" "$G" "$L" "${EPOCHREALTIME/[.,]/}" >> "$D/$CUTTLE_TARGET.log"; }"#;

/// A step lock: name, scope (`target` or `cluster`), capacity.
pub type StepLock = (&'static str, &'static str, u32);

/// One deployment the workload submits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    pub project: &'static str,
    pub tenant: Option<String>,
    pub bypass: bool,
    /// The explicit concurrency tag, if any.
    pub explicit_tag: Option<&'static str>,
    /// Each step's name and its step lock.
    pub steps: Vec<(&'static str, Option<StepLock>)>,
    pub role: String,
    pub sleep_ms: u64,
}

impl Deployment {
    /// The tag the task must hold (semantics A2).
    pub fn tag(&self) -> String {
        match (self.explicit_tag, &self.tenant) {
            (Some(tag), _) => tag.to_string(),
            (None, Some(tenant)) => format!("{tenant}/{}/Production", self.project),
            (None, None) => format!("{}/Production", self.project),
        }
    }

    /// The task file (`cuttle task submit -f`), with `release` and stamps under `stamps`.
    pub fn task_file(&self, release: u64, stamps: &Path) -> String {
        let mut text = format!(
            "project = \"{}\"\nrelease = \"1.0.{release}\"\nenvironment = \"Production\"\n",
            self.project
        );
        if let Some(tenant) = &self.tenant {
            text += &format!("tenant = \"{tenant}\"\n");
        }
        let bypass = if self.bypass { "True" } else { "False" };
        text += &format!(
            "[[variables]]\nname = \"Cuttle.BypassDeploymentMutex\"\nvalue = \"{bypass}\"\n"
        );
        if let Some(tag) = self.explicit_tag {
            text += &format!(
                "[[variables]]\nname = \"Cuttle.Task.ConcurrencyTag\"\nvalue = \"{tag}\"\n"
            );
        }
        for (step, lock) in &self.steps {
            let lock_word = match lock {
                Some((name, scope, capacity)) => format!("{name}:{scope}:{capacity}"),
                None => "-".to_string(),
            };
            let script = format!(
                "D='{}'; M={}; G='{}'; L='{lock_word}'\n{STAMP_FN}\ntrap 'st term; exit 143' TERM\nst start\nsleep {}.{:03} & wait $!\nst end\n",
                stamps.display(),
                if self.bypass { "s" } else { "x" },
                self.tag(),
                self.sleep_ms / 1000,
                self.sleep_ms % 1000,
            );
            text += &format!(
                "[[steps]]\nname = \"{step}\"\nroles = [\"{}\"]\ntimeout_ms = 30000\nscript = '''\n{script}'''\n",
                self.role
            );
            if let Some((name, scope, capacity)) = lock {
                text += &format!(
                    "lock = {{ name = \"{name}\", scope = \"{scope}\", capacity = {capacity} }}\n"
                );
            }
        }
        text
    }
}

/// Draws the next deployment.
pub fn draw(rng: &mut StdRng) -> Deployment {
    let role = match rng.gen_range(0..10) {
        0 => "web".to_string(),
        k => format!("r{}", k % 3),
    };
    let sleep_ms = rng.gen_range(100..=700);
    let mut d = Deployment {
        project: "alpha",
        tenant: None,
        bypass: false,
        explicit_tag: None,
        steps: vec![("deploy", None)],
        role,
        sleep_ms,
    };
    match rng.gen_range(0..6) {
        0 => {}
        1 => {
            d.project = "beta";
            d.bypass = true;
            d.steps = vec![("migrate", Some(("db", "target", 1))), ("deploy", None)];
        }
        2 => {
            d.project = "gamma";
            d.bypass = true;
            d.tenant = Some(format!("t{}", rng.gen_range(1..=3)));
        }
        3 => {
            d.project = "delta";
            d.explicit_tag = Some("chaos-shared");
        }
        4 => {
            d.project = "epsilon";
            d.bypass = true;
            d.explicit_tag = Some("chaos-shared");
        }
        _ => {
            d.project = "zeta";
            d.bypass = true;
            d.steps = vec![("deploy", Some(("mig", "cluster", 2)))];
        }
    }
    d
}

/// What the client threads share.
#[derive(Clone)]
pub struct Workload {
    pub clients: Clients,
    /// One client host per lock contender thread.
    pub lockers: Vec<Clients>,
    pub recorder: Recorder,
    /// Where scripts stamp (one file per target, `locks.log` for contenders).
    pub stamps: PathBuf,
    /// Task files are written here.
    pub files: PathBuf,
    pub stop: Arc<AtomicBool>,
    pub tasks: Arc<Mutex<Vec<u64>>>,
    releases: Arc<AtomicU64>,
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

impl Workload {
    pub fn new(
        clients: Clients,
        lockers: Vec<Clients>,
        recorder: Recorder,
        dir: &Path,
    ) -> std::io::Result<Workload> {
        let stamps = dir.join("stamps");
        let files = dir.join("tasks");
        std::fs::create_dir_all(&stamps)?;
        std::fs::create_dir_all(&files)?;
        Ok(Workload {
            clients,
            lockers,
            recorder,
            stamps,
            files,
            stop: Arc::new(AtomicBool::new(false)),
            tasks: Arc::new(Mutex::new(Vec::new())),
            releases: Arc::new(AtomicU64::new(1)),
        })
    }

    fn op(
        &self,
        process: u32,
        f: &str,
        phase: OpPhase,
        task: Option<u64>,
        key: &str,
        detail: &str,
    ) {
        self.recorder.push(Event::Op(Op {
            t_us: now_us(),
            process,
            f: f.to_string(),
            phase,
            task,
            key: key.to_string(),
            detail: shorten(detail),
        }));
    }

    /// Submits one deployment and records it.
    pub fn submit(&self, process: u32, deployment: &Deployment) {
        let release = self.releases.fetch_add(1, Ordering::SeqCst);
        let path = self.files.join(format!("task-{release}.toml"));
        if let Err(error) = std::fs::write(&path, deployment.task_file(release, &self.stamps)) {
            self.op(
                process,
                "submit",
                OpPhase::Invoke,
                None,
                deployment.project,
                "",
            );
            self.op(
                process,
                "submit",
                OpPhase::Fail,
                None,
                deployment.project,
                &error.to_string(),
            );
            return;
        }
        let file = path.to_string_lossy().to_string();
        self.op(
            process,
            "submit",
            OpPhase::Invoke,
            None,
            deployment.project,
            &file,
        );
        let out = self.clients.cli(
            &["task", "submit", "-f", &file, "--output", "json"],
            OP_TIMEOUT,
        );
        let id = serde_json::from_str::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|j| j["tasks"][0]["id"].as_u64());
        match (out.code, id) {
            (Some(0), Some(id)) => {
                let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                if tasks.len() < TASKS_REMEMBERED_MAX {
                    tasks.push(id);
                }
                drop(tasks);
                self.op(
                    process,
                    "submit",
                    OpPhase::Ok,
                    Some(id),
                    deployment.project,
                    "",
                );
            }
            // Exit 2: the file was refused before anything was sent.
            (Some(2), _) => self.op(
                process,
                "submit",
                OpPhase::Fail,
                None,
                deployment.project,
                &out.stderr,
            ),
            _ => self.op(
                process,
                "submit",
                OpPhase::Info,
                None,
                deployment.project,
                &out.stderr,
            ),
        }
    }

    /// Cancels a random acknowledged task.
    pub fn cancel(&self, process: u32, rng: &mut StdRng) {
        let task = {
            let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            if tasks.is_empty() {
                return;
            }
            // Recent tasks are the ones likely still queued or running.
            let from = tasks.len().saturating_sub(10);
            tasks[rng.gen_range(from..tasks.len())]
        };
        self.op(process, "cancel", OpPhase::Invoke, Some(task), "", "");
        let out = self
            .clients
            .cli(&["task", "cancel", &task.to_string()], OP_TIMEOUT);
        let phase = match out.code {
            Some(0) => OpPhase::Ok,
            Some(_) if out.stderr.contains("already ended") => OpPhase::Fail,
            _ => OpPhase::Info,
        };
        self.op(process, "cancel", phase, Some(task), "", &out.stderr);
    }

    /// Runs one `cuttle lock run` contender from `client` that stamps while it holds the lock.
    /// Some hold it longer than its 5 s lease, so that a contender cut off from the cluster
    /// must stop its command before the lease runs out at the cluster.
    pub fn lock(&self, client: &Clients, process: u32, serial: u64, rng: &mut StdRng) {
        let (name, capacity) = if rng.gen_bool(0.5) {
            ("chaos-a", 1)
        } else {
            ("mig", 2)
        };
        let holder = format!("w{process}-{serial}");
        let sleep_ms: u64 = if rng.gen_bool(0.3) {
            rng.gen_range(2_000..=7_000)
        } else {
            rng.gen_range(100..=600)
        };
        let script = format!(
            "S='{}/locks.log'; lst() {{ echo \"$1 {holder} {name} {capacity} $CUTTLE_FENCING_TOKEN ${{EPOCHREALTIME/[.,]/}}\" >> \"$S\"; }}; trap 'lst lterm; exit 143' TERM; lst lstart; sleep {}.{:03} & wait $!; lst lend",
            self.stamps.display(),
            sleep_ms / 1000,
            sleep_ms % 1000
        );
        let capacity_text = capacity.to_string();
        self.op(process, "lock", OpPhase::Invoke, None, &holder, name);
        let out = client.cli(
            &[
                "lock",
                "run",
                name,
                "--capacity",
                &capacity_text,
                "--scope",
                "cluster",
                "--ttl",
                "5s",
                "--holder",
                &holder,
                "--",
                "bash",
                "-c",
                &script,
            ],
            LOCK_OP_TIMEOUT,
        );
        let phase = if out.code == Some(0) {
            OpPhase::Ok
        } else {
            OpPhase::Info
        };
        // The lock linearizability check must know whether the release was confirmed; the
        // detail is shortened, so put `cuttle`'s word for an unconfirmed one first.
        let detail = match out.stderr.find("could not release") {
            Some(at) => format!("{} | {}", &out.stderr[at..], out.stderr),
            None => out.stderr.clone(),
        };
        self.op(process, "lock", phase, None, &holder, &detail);
    }

    /// Starts the client threads: `submitters` submitting, one cancelling, `lockers` contending.
    pub fn start(
        &self,
        seed: u64,
        submitters: u32,
        lockers: u32,
    ) -> Vec<std::thread::JoinHandle<()>> {
        let mut threads = Vec::new();
        for process in 0..submitters + 1 + lockers {
            let me = self.clone();
            threads.push(std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(
                    seed.wrapping_mul(1_000_003).wrapping_add(process as u64),
                );
                let mut serial = 0;
                while !me.stop.load(Ordering::SeqCst) {
                    serial += 1;
                    if process < submitters {
                        let deployment = draw(&mut rng);
                        me.submit(process, &deployment);
                        std::thread::sleep(Duration::from_millis(rng.gen_range(200..=900)));
                    } else if process == submitters {
                        std::thread::sleep(Duration::from_millis(rng.gen_range(1_500..=4_000)));
                        me.cancel(process, &mut rng);
                    } else {
                        let index = (process - submitters - 1) as usize;
                        let client = me.lockers.get(index).unwrap_or(&me.clients).clone();
                        me.lock(&client, process, serial, &mut rng);
                        std::thread::sleep(Duration::from_millis(rng.gen_range(200..=1_000)));
                    }
                }
            }));
        }
        threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_files_carry_the_facts_the_checkers_need() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = draw(&mut rng);
            seen.insert(d.project);
            let text = d.task_file(7, Path::new("/tmp/stamps"));
            assert!(text.contains("release = \"1.0.7\""));
            assert!(text.contains(&format!("G='{}'", d.tag())), "{text}");
            assert!(text.contains(if d.bypass { "M=s" } else { "M=x" }));
            assert!(!text.contains("#{"), "no substitution markers: {text}");
        }
        assert_eq!(seen.len(), 6, "every project is drawn: {seen:?}");
        let gamma = Deployment {
            project: "gamma",
            tenant: Some("t2".into()),
            bypass: true,
            explicit_tag: None,
            steps: vec![("deploy", None)],
            role: "r1".into(),
            sleep_ms: 250,
        };
        assert_eq!(gamma.tag(), "t2/gamma/Production");
        assert!(gamma.task_file(1, Path::new("/s")).contains("sleep 0.250"));
    }
}

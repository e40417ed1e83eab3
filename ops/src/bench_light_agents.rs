//! Light agents for `cuttle bench scale`: a thousand targets in one process, each a real session of
//! the agent protocol (`Agents.Attach`: Hello, Welcome, heartbeats at the server's interval, a
//! `UnitStarted` and a `UnitFinished` report for every unit it is sent), but running no script and
//! keeping no journal. What they measure is the cluster's side of dispatch: admission, the grant,
//! the unit's way to its agent and the reports' way back through Raft, without bash and fsyncs on
//! the targets (those are `cuttle bench deploy`'s part).

use anyhow::Context as _;
use cuttle_proto::v1::agent_message::Kind as In;
use cuttle_proto::v1::agents_client::AgentsClient;
use cuttle_proto::v1::server_message::Kind as Out;
use cuttle_proto::v1::{AgentMessage, Heartbeat, Hello, ServerMessage, UnitFinished, UnitStarted};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// How long one agent may take to be welcomed.
const WELCOME_TIMEOUT_MS: u64 = 60_000;
/// The first pause after every endpoint refused an attach; it doubles up to the maximum.
const ATTACH_BACKOFF_INITIAL_MS: u64 = 100;
const ATTACH_BACKOFF_MAX_MS: u64 = 1_000;

/// One light agent's registration.
#[derive(Clone, Debug)]
pub(crate) struct LightTarget {
    pub name: String,
    pub environment: String,
    pub role: String,
    pub capacity: u32,
}

/// Running light agents; stopped by [`LightAgents::stop`].
pub(crate) struct LightAgents {
    stop: watch::Sender<bool>,
    sessions: JoinSet<anyhow::Result<()>>,
    /// What the agents ran, all together.
    pub ran: Arc<Ran>,
}

/// The units the agents ran: every (unit, attempt) once, and how many came twice or as a retry.
#[derive(Debug, Default)]
pub(crate) struct Ran {
    seen: Mutex<HashSet<(u64, u32)>>,
    duplicates: AtomicU64,
    retries: AtomicU64,
}

impl Ran {
    fn record(&self, unit: u64, attempt: u32) {
        if attempt > 1 {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
        let fresh = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((unit, attempt));
        if !fresh {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Distinct (unit, attempt) pairs run.
    pub(crate) fn units(&self) -> u64 {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len() as u64
    }

    /// Units sent to an agent that had already run them.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Units run again after a failed attempt (an agent lost).
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

impl LightAgents {
    /// Attaches one session per target, spread over `endpoints` in turn, and returns once every
    /// one was welcomed.
    pub(crate) async fn start(
        targets: &[LightTarget],
        endpoints: &[String],
    ) -> anyhow::Result<LightAgents> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoint to attach to");
        let (stop, stopped) = watch::channel(false);
        let ran = Arc::new(Ran::default());
        let (welcomed_tx, mut welcomed_rx) = mpsc::channel::<()>(targets.len().max(1));
        let mut sessions = JoinSet::new();
        for (k, target) in targets.iter().enumerate() {
            // Each agent starts at its own node and moves on to the next after a failed attach,
            // as real agents do.
            let mut order = endpoints.to_vec();
            order.rotate_left(k % endpoints.len());
            let session = Session {
                target: target.clone(),
                ran: ran.clone(),
                stopped: stopped.clone(),
                welcomed: welcomed_tx.clone(),
            };
            sessions.spawn(session.run(order));
        }
        drop(welcomed_tx);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(WELCOME_TIMEOUT_MS);
        for attached in 0..targets.len() {
            tokio::select! {
                welcomed = welcomed_rx.recv() => {
                    anyhow::ensure!(welcomed.is_some(), "an agent stopped before it was welcomed");
                }
                _ = tokio::time::sleep_until(deadline) => {
                    anyhow::bail!("only {attached} of {} agents were welcomed within {WELCOME_TIMEOUT_MS} ms", targets.len());
                }
                Some(ended) = sessions.join_next() => {
                    ended.context("an agent panicked")??;
                    anyhow::bail!("an agent's session ended before every agent was welcomed");
                }
            }
        }
        Ok(LightAgents {
            stop,
            sessions,
            ran,
        })
    }

    /// Fails if a session ended by itself (the stream broke).
    pub(crate) fn check(&mut self) -> anyhow::Result<()> {
        if let Some(ended) = self.sessions.try_join_next() {
            ended.context("an agent panicked")??;
            anyhow::bail!("an agent's session ended during the run");
        }
        Ok(())
    }

    /// Closes every session.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.sessions.join_next().await.is_some() {}
    }
}

struct Session {
    target: LightTarget,
    ran: Arc<Ran>,
    stopped: watch::Receiver<bool>,
    welcomed: mpsc::Sender<()>,
}

impl Session {
    /// Attaches (trying the endpoints in turn, backing off up to [`ATTACH_BACKOFF_MAX_MS`]
    /// between rounds, until [`WELCOME_TIMEOUT_MS`]) and then serves the session until stopped.
    async fn run(self, endpoints: Vec<String>) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(WELCOME_TIMEOUT_MS);
        let mut backoff_ms = ATTACH_BACKOFF_INITIAL_MS;
        loop {
            let mut last_error = None;
            for endpoint in &endpoints {
                match self.attach(endpoint).await {
                    Ok(inbound) => return self.serve(inbound).await,
                    Err(error) => last_error = Some(error),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(last_error.expect("at least one endpoint"));
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(ATTACH_BACKOFF_MAX_MS);
        }
    }

    /// Opens the session and waits for its Welcome.
    async fn attach(&self, endpoint: &str) -> anyhow::Result<Attached> {
        let mut client = AgentsClient::connect(format!("http://{endpoint}"))
            .await
            .with_context(|| format!("agent {} cannot reach {endpoint}", self.target.name))?;
        let (tx, rx) = mpsc::unbounded_channel::<AgentMessage>();
        let hello = Hello {
            name: self.target.name.clone(),
            environments: vec![self.target.environment.clone()],
            roles: vec![self.target.role.clone()],
            tenants: Vec::new(),
            capacity: self.target.capacity,
            version: env!("CARGO_PKG_VERSION").to_string(),
            running: Vec::new(),
        };
        send(&tx, In::Hello(hello));
        let mut inbound = client
            .attach(UnboundedReceiverStream::new(rx))
            .await
            .with_context(|| format!("agent {} was not attached", self.target.name))?
            .into_inner();
        match inbound.message().await {
            Ok(Some(ServerMessage {
                kind: Some(Out::Welcome(welcome)),
            })) => Ok(Attached {
                tx,
                inbound,
                heartbeat_interval_ms: welcome.heartbeat_interval_ms.max(1),
            }),
            Ok(other) => anyhow::bail!(
                "agent {} got {other:?} from {endpoint} where a Welcome was due",
                self.target.name
            ),
            Err(status) => Err(status).with_context(|| {
                format!("agent {} was not welcomed by {endpoint}", self.target.name)
            }),
        }
    }

    async fn serve(mut self, attached: Attached) -> anyhow::Result<()> {
        let Attached {
            tx,
            mut inbound,
            heartbeat_interval_ms,
        } = attached;
        let _ = self.welcomed.send(()).await;
        let mut beat = tokio::time::interval(Duration::from_millis(heartbeat_interval_ms));
        let (mut report_id, mut seq) = (0u64, 0u64);
        loop {
            tokio::select! {
                message = inbound.message() => {
                    let message = message.with_context(|| format!("agent {}'s stream broke", self.target.name))?;
                    let Some(message) = message else {
                        anyhow::bail!("the cluster closed agent {}'s session", self.target.name);
                    };
                    match message.kind {
                        Some(Out::Run(run)) => {
                            report_id += 1;
                            send(&tx, In::Started(UnitStarted { report_id, unit: run.unit, attempt: run.attempt }));
                            report_id += 1;
                            send(&tx, In::Finished(UnitFinished {
                                report_id,
                                unit: run.unit,
                                attempt: run.attempt,
                                exit_code: 0,
                                reason: String::new(),
                            }));
                            self.ran.record(run.unit, run.attempt);
                        }
                        _ => {}
                    }
                }
                _ = beat.tick() => {
                    seq += 1;
                    send(&tx, In::Heartbeat(Heartbeat { seq, refusals: 0 }));
                }
                _ = self.stopped.changed() => return Ok(()),
            }
        }
    }
}

/// A session that was welcomed.
struct Attached {
    tx: mpsc::UnboundedSender<AgentMessage>,
    inbound: tonic::Streaming<ServerMessage>,
    heartbeat_interval_ms: u64,
}

fn send(tx: &mpsc::UnboundedSender<AgentMessage>, kind: In) {
    let _ = tx.send(AgentMessage { kind: Some(kind) });
}

//! The leader's registry of attached agents: one session per target name, with the channel that
//! carries messages to it, when it was last heard from (the lease), and what it reported about
//! itself. Only the leader's registry matters; it is rebuilt by the agents attaching again after a
//! leader change, and a new leader starts every lease afresh from the moment it took over.

use cuttle_proto::v1::ServerMessage;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages queued to one agent; when full the agent is too slow and its session is closed (it
/// re-attaches and receives everything it must run again).
pub const SESSION_QUEUE_MESSAGES_MAX: usize = 4_096;

/// A message for an agent, with the log index of the entry that caused it (0 for replies), so a
/// session can skip what its initial scan already covered.
pub type Outbound = (u64, ServerMessage);

/// One attached agent.
#[derive(Debug)]
pub struct Session {
    /// Distinguishes this session from an earlier one of the same agent.
    pub id: u64,
    /// Messages to the agent.
    pub tx: mpsc::Sender<Outbound>,
    /// When it attached.
    pub attached: Instant,
    /// The last message from it.
    pub last_contact: Instant,
    /// Units it refused so far (its own count).
    pub refusals: u64,
    /// Its build.
    pub version: String,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: BTreeMap<String, Session>,
    next_id: u64,
    /// When this node last became leader: no lease runs out earlier than a full lease after it.
    leader_since: Option<Instant>,
    /// Targets with contact recorded by this leader without a session (lost sessions keep theirs).
    last_contact: BTreeMap<String, Instant>,
}

/// The registry, shared by the agent service, the dispatcher and the reads.
#[derive(Clone, Debug, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Inner>>,
    /// Orders an agent's registration against its lease running out (see [`Sessions::registration`]).
    registration: Arc<tokio::sync::Mutex<()>>,
}

/// What `cuttle agent list` shows of a session.
#[derive(Clone, Debug)]
pub struct SessionView {
    /// Milliseconds since the agent was last heard from.
    pub last_contact_ms_ago: u64,
    /// Milliseconds since it attached.
    pub attached_ms_ago: u64,
    /// Units it refused.
    pub refusals: u64,
    /// Its build.
    pub version: String,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("sessions lock")
    }

    /// Held while an agent's registration (`UpsertTarget`) takes its place in the log, and while
    /// a lease found run out takes its `AgentLost`'s place: so a declaration decided on an old
    /// lease can never land after the registration of a newer session (whose units it would then
    /// fail while they run), and a registration always restarts the lease first ([`Sessions::touch`]).
    pub async fn registration(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.registration.lock().await
    }

    /// Restarts the lease of `name` now (an agent is registering).
    pub fn touch(&self, name: &str) {
        self.lock()
            .last_contact
            .insert(name.to_string(), Instant::now());
    }

    /// Registers a session for `name`, replacing (and so closing) an earlier one.
    pub fn attach(&self, name: &str, tx: mpsc::Sender<Outbound>, version: String) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let now = Instant::now();
        inner.last_contact.insert(name.to_string(), now);
        inner.sessions.insert(
            name.to_string(),
            Session {
                id,
                tx,
                attached: now,
                last_contact: now,
                refusals: 0,
                version,
            },
        );
        id
    }

    /// Removes session `id` of `name` if it is still the current one.
    pub fn detach(&self, name: &str, id: u64) {
        let mut inner = self.lock();
        if inner.sessions.get(name).is_some_and(|s| s.id == id) {
            inner.sessions.remove(name);
        }
    }

    /// Closes the session of `name`, whatever it is (the agent was declared lost).
    pub fn close(&self, name: &str) {
        self.lock().sessions.remove(name);
    }

    /// Closes every session (this node stopped leading).
    pub fn close_all(&self) {
        let mut inner = self.lock();
        inner.sessions.clear();
        inner.last_contact.clear();
        inner.leader_since = None;
    }

    /// Closes every session but keeps the leases running (the agents re-attach at once).
    pub fn close_all_sessions(&self) {
        self.lock().sessions.clear();
    }

    /// Records that this node became leader now.
    pub fn became_leader(&self) {
        let mut inner = self.lock();
        inner.leader_since = Some(Instant::now());
        inner.last_contact.clear();
    }

    /// Records a message from session `id` of `name`.
    pub fn heard(&self, name: &str, id: u64, refusals: Option<u64>) {
        let mut inner = self.lock();
        let now = Instant::now();
        if let Some(session) = inner.sessions.get_mut(name).filter(|s| s.id == id) {
            session.last_contact = now;
            if let Some(refusals) = refusals {
                session.refusals = refusals;
            }
            inner.last_contact.insert(name.to_string(), now);
        }
    }

    /// Whether session `id` is still the current session of `name`.
    pub fn is_current(&self, name: &str, id: u64) -> bool {
        self.lock().sessions.get(name).is_some_and(|s| s.id == id)
    }

    /// Sends `message` to the agent of `name` if it is attached; a full queue closes the session.
    pub fn send(&self, name: &str, message: Outbound) {
        let mut inner = self.lock();
        let full = match inner.sessions.get(name) {
            Some(session) => session.tx.try_send(message).is_err(),
            None => false,
        };
        if full {
            tracing::warn!(
                agent = name,
                "agent queue full or closed: closing its session; it re-attaches"
            );
            inner.sessions.remove(name);
        }
    }

    /// The time a lease of `name` runs from: its last contact with this leader, or when this node
    /// became leader. `None` when this node does not lead.
    pub fn lease_start(&self, name: &str) -> Option<Instant> {
        let inner = self.lock();
        let since = inner.leader_since?;
        Some(match inner.last_contact.get(name) {
            Some(last) => (*last).max(since),
            None => since,
        })
    }

    /// Whether the lease of `name` had run out at `now` on this leader (never when it does not lead).
    pub fn lease_ran_out(&self, name: &str, lease_timeout: Duration, now: Instant) -> bool {
        self.lease_start(name)
            .is_some_and(|start| now.saturating_duration_since(start) >= lease_timeout)
    }

    /// The view of the session of `name`, if attached.
    pub fn view(&self, name: &str) -> Option<SessionView> {
        let inner = self.lock();
        let now = Instant::now();
        inner.sessions.get(name).map(|s| SessionView {
            last_contact_ms_ago: now.duration_since(s.last_contact).as_millis() as u64,
            attached_ms_ago: now.duration_since(s.attached).as_millis() as u64,
            refusals: s.refusals,
            version: s.version.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chaos seed 777 (docs/chaos.md, bug 2): the leader listed a lease as run out, spent seconds
    /// declaring other agents lost without a quorum, and then declared this one lost although it
    /// had registered again meanwhile, failing the units its new session had just started.
    #[tokio::test]
    async fn a_registration_restarts_a_lease_that_an_older_scan_found_run_out() {
        let sessions = Sessions::default();
        sessions.became_leader();
        let lease = Duration::from_millis(200);
        let scanned_at = Instant::now() + lease * 2;
        assert!(sessions.lease_ran_out("web02", lease, scanned_at));
        // The agent registers: under the registration lock its lease restarts.
        {
            let _registration = sessions.registration().await;
            sessions.touch("web02");
        }
        assert!(
            !sessions.lease_ran_out("web02", lease, Instant::now()),
            "the declaration must look again and find the lease running"
        );
        // While an expiry holds the registration lock, a registration waits for it.
        let held = sessions.registration().await;
        let waiting = sessions.clone();
        let registration = tokio::spawn(async move {
            let _registration = waiting.registration().await;
            waiting.touch("web03");
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !registration.is_finished(),
            "web03 registered while an expiry held the lock"
        );
        drop(held);
        registration.await.unwrap();
        assert!(!sessions.lease_ran_out("web03", lease, Instant::now() + lease / 2));
    }
}

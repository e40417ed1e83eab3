//! The agent's side of its lease with the cluster, for self-fencing. Pure: instants come in as
//! arguments.
//!
//! The leader declares the agent lost when it hears no heartbeat for `lease_timeout_ms`, and then
//! may dispatch the agent's units elsewhere. So the agent must have stopped its units by then. It
//! counts its lease from the *send* instant of the newest acknowledged heartbeat: the leader
//! acknowledges a heartbeat only after a quorum confirmed its leadership after receiving it, so the
//! cluster cannot have declared the agent lost before that instant. Before the first acknowledgement
//! the `Welcome` counts as the acknowledgement of a heartbeat sent when `Attach` was opened.
//!
//! With `margin = lease_timeout / 4`, the agent fences itself once `lease_timeout - margin` has
//! passed since that instant: it stops every unit, SIGKILL following SIGTERM after at most
//! `margin / 2`, and drops the session. The remaining margin absorbs clock-rate differences and the
//! time the kernel takes to reap the processes.

use cuttle_proto::v1::Welcome;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Heartbeats awaiting an acknowledgement that are remembered; older ones are forgotten (an ack
/// for them would only extend the lease less than a newer one).
pub const HEARTBEATS_UNACKED_MAX: usize = 1_024;

/// The lease of one session.
#[derive(Clone, Debug)]
pub struct Lease {
    timeout: Duration,
    heartbeat_interval: Duration,
    valid_from: Instant,
    sent: BTreeMap<u64, Instant>,
}

impl Lease {
    /// The lease a `Welcome` grants to a session whose `Attach` was opened at `opened_at`.
    pub fn new(welcome: &Welcome, opened_at: Instant) -> Result<Lease, String> {
        if welcome.lease_timeout_ms < 4 {
            return Err(format!(
                "the server's lease timeout of {} ms is too short to fence against",
                welcome.lease_timeout_ms
            ));
        }
        if welcome.heartbeat_interval_ms == 0
            || welcome.heartbeat_interval_ms >= welcome.lease_timeout_ms
        {
            return Err(format!(
                "the server's heartbeat interval of {} ms does not fit in its lease timeout of {} ms",
                welcome.heartbeat_interval_ms, welcome.lease_timeout_ms
            ));
        }
        Ok(Lease {
            timeout: Duration::from_millis(welcome.lease_timeout_ms),
            heartbeat_interval: Duration::from_millis(welcome.heartbeat_interval_ms),
            valid_from: opened_at,
            sent: BTreeMap::new(),
        })
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// The safety margin: a quarter of the lease timeout.
    pub fn margin(&self) -> Duration {
        self.timeout / 4
    }

    /// How long stopping units may take between SIGTERM and SIGKILL once fenced.
    pub fn kill_grace(&self) -> Duration {
        self.margin() / 2
    }

    /// Heartbeat `seq` was sent at `at`.
    pub fn heartbeat_sent(&mut self, seq: u64, at: Instant) {
        self.sent.insert(seq, at);
        while self.sent.len() > HEARTBEATS_UNACKED_MAX {
            self.sent.pop_first();
        }
    }

    /// Heartbeat `seq` was acknowledged: the lease counts from its send instant. Acks of unknown
    /// or older heartbeats change nothing.
    pub fn acked(&mut self, seq: u64) {
        if let Some(&sent) = self.sent.get(&seq) {
            self.valid_from = self.valid_from.max(sent);
        }
        self.sent.retain(|&s, _| s > seq);
    }

    /// When the agent must fence itself unless a newer heartbeat is acknowledged.
    pub fn fence_at(&self) -> Instant {
        self.valid_from + (self.timeout - self.margin())
    }

    /// Whether a unit may start at `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        now < self.fence_at()
    }

    /// How long the agent has had no confirmed contact with the leader, at `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.valid_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(lease_timeout_ms: u64, heartbeat_interval_ms: u64) -> Welcome {
        Welcome {
            leader_id: 1,
            lease_timeout_ms,
            heartbeat_interval_ms,
        }
    }

    #[test]
    fn the_welcome_counts_from_the_open_instant() {
        let opened = Instant::now();
        let lease = Lease::new(&welcome(800, 100), opened).unwrap();
        assert_eq!(lease.margin(), Duration::from_millis(200));
        assert_eq!(lease.kill_grace(), Duration::from_millis(100));
        assert_eq!(lease.fence_at(), opened + Duration::from_millis(600));
        assert!(lease.is_valid(opened + Duration::from_millis(599)));
        assert!(!lease.is_valid(opened + Duration::from_millis(600)));
    }

    #[test]
    fn an_ack_extends_the_lease_from_the_heartbeats_send_instant() {
        let opened = Instant::now();
        let mut lease = Lease::new(&welcome(800, 100), opened).unwrap();
        let ms = Duration::from_millis;
        lease.heartbeat_sent(1, opened + ms(100));
        lease.heartbeat_sent(2, opened + ms(200));
        lease.heartbeat_sent(3, opened + ms(300));
        lease.acked(2);
        assert_eq!(lease.fence_at(), opened + ms(800));
        // An ack of an older heartbeat, arriving late, never moves the lease back.
        lease.acked(1);
        assert_eq!(lease.fence_at(), opened + ms(800));
        lease.acked(99);
        assert_eq!(lease.fence_at(), opened + ms(800));
        assert_eq!(lease.silent_for(opened + ms(450)), ms(250));
    }

    #[test]
    fn a_welcome_that_cannot_be_fenced_against_is_refused() {
        let now = Instant::now();
        assert!(Lease::new(&welcome(0, 0), now).is_err());
        assert!(Lease::new(&welcome(800, 800), now).is_err());
        assert!(Lease::new(&welcome(800, 0), now).is_err());
    }

    #[test]
    fn unacknowledged_heartbeats_are_bounded() {
        let opened = Instant::now();
        let mut lease = Lease::new(&welcome(800, 100), opened).unwrap();
        for seq in 0..(HEARTBEATS_UNACKED_MAX as u64 + 10) {
            lease.heartbeat_sent(seq, opened);
        }
        assert_eq!(lease.sent.len(), HEARTBEATS_UNACKED_MAX);
    }
}

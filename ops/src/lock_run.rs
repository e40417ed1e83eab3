//! `cuttle lock run`: take a named lock of the cluster, run a command while holding it, release
//! it when the command ends. The lease is kept alive while the command runs; if it is lost (the
//! cluster could not be reached for the whole lease) the command is stopped, because someone else
//! may hold the lock by then.

use anyhow::{bail, Context as _};
use cuttle_node::client::Client;
use cuttle_proto::v1::{AcquireLockRequest, LockState};
use std::time::Duration;
use tokio::time::Instant;

/// What to lock and what to run.
#[derive(Debug, Clone)]
pub struct LockRun {
    /// The lock's name.
    pub name: String,
    /// Holders at once.
    pub capacity: u32,
    /// The target, for a target-scoped lock.
    pub target: Option<String>,
    /// The lease.
    pub ttl: Duration,
    /// Who holds it (for `cuttle locks`).
    pub holder: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// How long the command has to stop after SIGTERM when the lease is lost.
    pub stop_grace: Duration,
}

/// Runs `run`; returns the command's exit code.
pub async fn run(client: &Client, run: &LockRun) -> anyhow::Result<i32> {
    if run.command.is_empty() {
        bail!("no command: give it after --, for example: cuttle lock run db -- ./migrate.sh");
    }
    let ttl_ms = run.ttl.as_millis() as u64;
    let mut lease = ClientLease::new(run.ttl);
    let sent = Instant::now();
    let state = client
        .lock_acquire(AcquireLockRequest {
            name: run.name.clone(),
            target: run.target.clone().unwrap_or_default(),
            capacity: run.capacity,
            holder: run.holder.clone(),
            ttl_ms,
        })
        .await
        .with_context(|| format!("cannot ask for lock {:?}", run.name))?;
    lease.confirmed(sent);
    let request = state.request;
    let renew_every = (run.ttl / 3).max(Duration::from_millis(50));
    let mut state = state;
    let mut said_waiting = false;
    while state.state == "queued" {
        if !said_waiting {
            eprintln!(
                "cuttle: waiting for lock {:?}: {}",
                run.name, state.waiting_for
            );
            said_waiting = true;
        }
        let waited = client
            .lock_wait(request, renew_every.as_millis() as u64)
            .await;
        state = match waited {
            Ok(s) if s.state == "queued" => renew(client, request, &mut lease).await.unwrap_or(s),
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "lock wait failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                renew(client, request, &mut lease).await.unwrap_or(state)
            }
        };
    }
    if state.state != "granted" {
        bail!(
            "lock {:?} request {request} ended before it was granted (its lease expired): the cluster was unreachable for too long",
            run.name
        );
    }
    // The answer that says "granted" may have been sent long ago (held up in a cut network): the
    // lease is only known to run until a TTL after the *sending* of the last renewal the cluster
    // confirmed. Confirm it afresh, and start only with most of a lease ahead.
    let confirmed = tokio::time::timeout(
        lease.time_to_fence(Instant::now()),
        renew(client, request, &mut lease),
    )
    .await;
    let fresh = matches!(&confirmed, Ok(Some(s)) if s.state == "granted");
    if !fresh || lease.time_to_fence(Instant::now()).is_zero() {
        let _ = client.lock_release(request).await;
        bail!(
            "lock {:?} was granted, but its lease could not be confirmed in time (the cluster was unreachable): the command was not started",
            run.name
        );
    }
    let token = state.token;
    let spawned = tokio::process::Command::new(&run.command[0])
        .args(&run.command[1..])
        .env("CUTTLE_FENCING_TOKEN", token.to_string())
        .env("CUTTLE_LOCK_NAME", &run.name)
        .env("CUTTLE_LOCK_REQUEST", request.to_string())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = client.lock_release(request).await;
            bail!("cannot start {:?}: {e}", run.command[0]);
        }
    };
    let pid = child.id().map(|p| p as i32);
    let mut renew_tick = tokio::time::interval(renew_every);
    renew_tick.tick().await;
    let code = loop {
        let fence_at = Instant::now() + lease.time_to_fence(Instant::now());
        tokio::select! {
            status = child.wait() => {
                let status = status.context("cannot wait for the command")?;
                break status.code().unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt as _;
                    128 + status.signal().unwrap_or(0)
                });
            }
            _ = tokio::time::sleep_until(fence_at) => {
                // Stop before the lease can have run out at the cluster: SIGKILL lands by then.
                eprintln!("cuttle: cannot renew lock {:?}: stopping the command before its lease runs out", run.name);
                stop(pid, &mut child, lease.grace_left(Instant::now(), run.stop_grace)).await;
                bail!("lock {:?} could not be renewed; the command was stopped", run.name);
            }
            _ = renew_tick.tick() => {
                // Bounded by the fence, so a renewal stuck behind a cut link cannot outlive it.
                let renewed = tokio::time::timeout_at(fence_at, renew(client, request, &mut lease)).await;
                if let Ok(Some(s)) = renewed {
                    if s.state != "granted" {
                        eprintln!("cuttle: lease of lock {:?} expired: stopping the command", run.name);
                        stop(pid, &mut child, lease.grace_left(Instant::now(), run.stop_grace)).await;
                        bail!("lock {:?} was lost while the command ran (its lease expired); the command was stopped", run.name);
                    }
                }
            }
        }
    };
    if let Err(e) = client.lock_release(request).await {
        eprintln!(
            "cuttle: could not release lock {:?} ({e}); it expires with its lease",
            run.name
        );
    }
    Ok(code)
}

/// Renews the lease; on an answer that the request still stands, the lease is known to run until
/// a TTL after this call was sent.
async fn renew(client: &Client, request: u64, lease: &mut ClientLease) -> Option<LockState> {
    let sent = Instant::now();
    let state = client.lock_keep_alive(request).await.ok()?;
    if state.state == "granted" || state.state == "queued" {
        lease.confirmed(sent);
    }
    Some(state)
}

/// What the client knows of its lease: it runs at least until a TTL after the sending of the last
/// request the cluster confirmed (the cluster renews on receipt, which comes after the sending).
/// The command is stopped a third of a TTL before that, and killed by a sixth of a TTL before it.
#[derive(Clone, Copy, Debug)]
struct ClientLease {
    ttl: Duration,
    confirmed_sent: Option<Instant>,
}

impl ClientLease {
    fn new(ttl: Duration) -> ClientLease {
        ClientLease {
            ttl,
            confirmed_sent: None,
        }
    }

    fn confirmed(&mut self, sent: Instant) {
        self.confirmed_sent = Some(self.confirmed_sent.map_or(sent, |s| s.max(sent)));
    }

    /// How long until the command must be stopped; zero when it must be now.
    fn time_to_fence(&self, now: Instant) -> Duration {
        self.confirmed_sent
            .map(|s| (s + self.ttl - self.ttl / 3).saturating_duration_since(now))
            .unwrap_or(Duration::ZERO)
    }

    /// The SIGTERM-to-SIGKILL grace that still ends the command a sixth of a TTL before the lease
    /// can run out: at most `wanted`.
    fn grace_left(&self, now: Instant, wanted: Duration) -> Duration {
        let kill_by = self
            .confirmed_sent
            .map(|s| (s + self.ttl - self.ttl / 6).saturating_duration_since(now))
            .unwrap_or(Duration::ZERO);
        wanted.min(kill_by)
    }
}

async fn stop(pid: Option<i32>, child: &mut tokio::process::Child, grace: Duration) {
    if let Some(pid) = pid {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads.
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            let _ = child.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_counts_from_the_sending_of_the_last_confirmed_renewal() {
        let ttl = Duration::from_secs(6);
        let mut lease = ClientLease::new(ttl);
        let t0 = Instant::now();
        assert_eq!(
            lease.time_to_fence(t0),
            Duration::ZERO,
            "nothing confirmed yet"
        );
        lease.confirmed(t0);
        assert_eq!(lease.time_to_fence(t0), Duration::from_secs(4));
        // A grant answered 4.6 s after its request was sent: no time is left to start the command.
        assert_eq!(
            lease.time_to_fence(t0 + Duration::from_millis(4_600)),
            Duration::ZERO
        );
        // An older confirmation arriving late does not move the lease back.
        lease.confirmed(t0 + Duration::from_secs(2));
        lease.confirmed(t0 + Duration::from_secs(1));
        assert_eq!(
            lease.time_to_fence(t0 + Duration::from_secs(2)),
            Duration::from_secs(4)
        );
        // SIGKILL lands a sixth of a TTL before the lease can end, whatever grace was asked for.
        let now = t0 + Duration::from_secs(6);
        assert_eq!(
            lease.grace_left(now, Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            lease.grace_left(now, Duration::from_millis(300)),
            Duration::from_millis(300)
        );
    }
}

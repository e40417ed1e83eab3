//! `cuttle lock run`: take a named lock of the cluster, run a command while holding it, release
//! it when the command ends. The lease is kept alive while the command runs; if it is lost (the
//! cluster could not be reached for the whole lease) the command is stopped, because someone else
//! may hold the lock by then.

use anyhow::{bail, Context as _};
use cuttle_node::client::Client;
use cuttle_proto::v1::AcquireLockRequest;
use std::time::Duration;

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
            Ok(s) if s.state == "queued" => client.lock_keep_alive(request).await.unwrap_or(s),
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "lock wait failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                client.lock_keep_alive(request).await.unwrap_or(state)
            }
        };
    }
    if state.state != "granted" {
        bail!(
            "lock {:?} request {request} ended before it was granted (its lease expired): the cluster was unreachable for too long",
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
    let mut renew = tokio::time::interval(renew_every);
    renew.tick().await;
    let mut last_renewed = tokio::time::Instant::now();
    let code = loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.context("cannot wait for the command")?;
                break status.code().unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt as _;
                    128 + status.signal().unwrap_or(0)
                });
            }
            _ = renew.tick() => {
                match client.lock_keep_alive(request).await {
                    Ok(s) if s.state == "granted" => last_renewed = tokio::time::Instant::now(),
                    Ok(_) => {
                        eprintln!("cuttle: lease of lock {:?} expired: stopping the command", run.name);
                        stop(pid, &mut child, run.stop_grace).await;
                        bail!("lock {:?} was lost while the command ran (its lease expired); the command was stopped", run.name);
                    }
                    Err(e) => {
                        // Stop before the lease can have run out at the cluster.
                        if last_renewed.elapsed() + renew_every >= run.ttl {
                            eprintln!("cuttle: cannot renew lock {:?} ({e}): stopping the command before its lease runs out", run.name);
                            stop(pid, &mut child, run.stop_grace).await;
                            bail!("lock {:?} could not be renewed; the command was stopped", run.name);
                        }
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

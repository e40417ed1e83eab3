//! Lock hand-off through the lock API, the method of `shared/notes/etcd-lock-anchor.md`: N clients
//! each repeatedly acquire one shared capacity-1 lock, hold it for no time, and release it. Reports
//! hand-offs per second and the hand-off latency: from one holder's release until the next
//! holder's acquire returns (pairs taken in fencing-token order).

use cuttle_node::client::Client;
use cuttle_proto::v1::AcquireLockRequest;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One hand-off run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LockRun {
    /// Contending clients.
    pub clients: usize,
    /// Grants per second.
    pub handoffs_per_s: f64,
    /// Median hand-off latency.
    pub handoff_p50_ms: f64,
    /// 99th percentile hand-off latency.
    pub handoff_p99_ms: f64,
    /// Calls that failed.
    pub errors: usize,
}

/// (token, granted at, released at)
type Grant = (u64, Instant, Instant);

async fn contend(
    client: Client,
    name: String,
    until: Instant,
    grants: Arc<Mutex<Vec<Grant>>>,
    errors: Arc<Mutex<usize>>,
) {
    while Instant::now() < until {
        let acquired = client
            .lock_acquire(AcquireLockRequest {
                name: name.clone(),
                target: String::new(),
                capacity: 1,
                holder: "bench".into(),
                ttl_ms: 10_000,
            })
            .await;
        let mut state = match acquired {
            Ok(state) => state,
            Err(_) => {
                *errors.lock().unwrap() += 1;
                continue;
            }
        };
        while state.state == "queued" {
            match client.lock_wait(state.request, 5_000).await {
                Ok(s) => state = s,
                Err(_) => {
                    *errors.lock().unwrap() += 1;
                    break;
                }
            }
        }
        if state.state != "granted" {
            continue;
        }
        let granted = Instant::now();
        let released = Instant::now();
        if client.lock_release(state.request).await.is_err() {
            *errors.lock().unwrap() += 1;
        }
        grants
            .lock()
            .unwrap()
            .push((state.token, granted, released));
    }
}

/// Runs `clients` contenders for `seconds` against `endpoints` (the leader first).
pub async fn handoffs(
    endpoints: &[String],
    clients: usize,
    seconds: u64,
    run_id: usize,
) -> anyhow::Result<LockRun> {
    let grants = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0));
    let name = format!("bench-{clients}-{run_id}");
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = Client::new(endpoints, Duration::from_secs(10))?;
        tasks.push(tokio::spawn(contend(
            client,
            name.clone(),
            until,
            grants.clone(),
            errors.clone(),
        )));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut grants = grants.lock().unwrap().clone();
    grants.sort_by_key(|g| g.0);
    let mut latencies: Vec<f64> = grants
        .windows(2)
        .map(|w| w[1].1.saturating_duration_since(w[0].2).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let errors = *errors.lock().unwrap();
    Ok(LockRun {
        clients,
        handoffs_per_s: grants.len() as f64 / elapsed,
        handoff_p50_ms: crate::bench::percentile(&latencies, 50.0),
        handoff_p99_ms: crate::bench::percentile(&latencies, 99.0),
        errors,
    })
}

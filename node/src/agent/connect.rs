//! Dialing the cluster: opening `Attach` on one server node and waiting for its `Welcome`, and the
//! backoff between attempts.

use cuttle_proto::v1::agents_client::AgentsClient;
use cuttle_proto::v1::{server_message, AgentMessage, ServerMessage, Welcome};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// The wait before trying the next server node of the list after one failed: short, because a
/// node that is down fails fast and another may already lead.
pub const NEXT_ENDPOINT_MS: u64 = 20;
/// The first wait after every node of the list failed in turn; it doubles after each such round
/// ...
pub const BACKOFF_INITIAL_MS: u64 = 100;
/// ... up to this: an election takes about a second, so an agent keeps trying about once a
/// second while there is no leader, with jitter so that agents cut off together do not return
/// together.
pub const BACKOFF_MAX_MS: u64 = 1_000;
/// Connecting to a server node fails after this long.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// A server that has not answered `Hello` with `Welcome` within this long is given up on.
pub const WELCOME_WAIT_MS: u64 = 10_000;

pub type Attached = (tonic::Streaming<ServerMessage>, Welcome);

/// Connects to `endpoint`, opens `Attach` with `outbound` (which holds the `Hello`) and waits for
/// the `Welcome`.
pub async fn attach(
    endpoint: String,
    outbound: mpsc::UnboundedReceiver<AgentMessage>,
) -> Result<Attached, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| format!("{endpoint} is not a usable address: {e}"))?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    let mut client = AgentsClient::new(channel).max_decoding_message_size(64 << 20);
    let wait = Duration::from_millis(WELCOME_WAIT_MS);
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(outbound);
    let response = tokio::time::timeout(wait, client.attach(stream))
        .await
        .map_err(|_| format!("{endpoint} did not answer Attach within {WELCOME_WAIT_MS} ms"))?
        .map_err(|status| format!("{endpoint} refused Attach: {status}"))?;
    let mut inbound = response.into_inner();
    let first = tokio::time::timeout(wait, inbound.next())
        .await
        .map_err(|_| format!("{endpoint} sent no Welcome within {WELCOME_WAIT_MS} ms"))?;
    match first {
        Some(Ok(ServerMessage {
            kind: Some(server_message::Kind::Welcome(welcome)),
        })) => Ok((inbound, welcome)),
        Some(Ok(other)) => Err(format!("{endpoint} sent {other:?} before Welcome")),
        Some(Err(status)) => Err(format!("{endpoint} ended Attach: {status}")),
        None => Err(format!("{endpoint} closed the stream before Welcome")),
    }
}

/// Exponential backoff with jitter, so that agents cut off together do not return together.
#[derive(Debug)]
pub struct Backoff {
    next_ms: u64,
    rng: u64,
}

impl Backoff {
    pub fn new(seed: u64) -> Backoff {
        Backoff {
            next_ms: BACKOFF_INITIAL_MS,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.next_ms = BACKOFF_INITIAL_MS;
    }

    /// A delay between half the current step and the step; the step doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: jitter needs no better randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let step = self.next_ms;
        self.next_ms = (self.next_ms * 2).min(BACKOFF_MAX_MS);
        Duration::from_millis(step / 2 + self.rng % (step / 2 + 1))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(12345);
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(backoff.next_delay().as_millis() as u64);
        }
        let mut step = BACKOFF_INITIAL_MS;
        for delay in &steps {
            assert!(
                step / 2 <= *delay && *delay <= step,
                "{delay} not in [{}, {step}]",
                step / 2
            );
            step = (step * 2).min(BACKOFF_MAX_MS);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(BACKOFF_INITIAL_MS));
    }
}

//! `cuttle cluster`: status, add, remove and transfer-leader, against any node of the cluster.

use anyhow::Context as _;
use cuttle_node::client::Client;
use std::time::Duration;

/// Where the cluster is: `--endpoints` or `CUTTLE_ENDPOINTS`.
#[derive(clap::Args, Debug, Clone)]
pub struct Endpoints {
    /// Nodes of the cluster, HOST:PORT,...; any of them will do.
    #[arg(
        long,
        env = "CUTTLE_ENDPOINTS",
        value_delimiter = ',',
        value_name = "HOST:PORT,...",
        global = true
    )]
    pub endpoints: Vec<String>,
    /// How long one request may take, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS", global = true)]
    pub timeout_ms: u64,
}

impl Endpoints {
    /// A client for these endpoints; without any, for the cluster `cuttle dev` runs (see
    /// [`dev_endpoints`]).
    pub fn client(&self) -> anyhow::Result<Client> {
        let endpoints = if self.endpoints.is_empty() {
            dev_endpoints()?
        } else {
            self.endpoints.clone()
        };
        Ok(Client::new(
            &endpoints,
            Duration::from_millis(self.timeout_ms),
        )?)
    }
}

/// Where `cuttle dev` writes its endpoints, in the order the CLI looks: its data directory under
/// the current directory, then the last one started by this user.
pub fn dev_endpoint_files() -> Vec<std::path::PathBuf> {
    let mut files = vec![std::path::PathBuf::from(crate::dev::DATA_DIR_DEFAULT).join("endpoints")];
    if let Some(home) = std::env::var_os("HOME") {
        files.push(std::path::PathBuf::from(home).join(".cuttle/dev-endpoints"));
    }
    files
}

/// The endpoints of the running `cuttle dev` cluster, when no --endpoints are given.
pub fn dev_endpoints() -> anyhow::Result<Vec<String>> {
    for file in dev_endpoint_files() {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let endpoints: Vec<String> = text
                .split([',', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if !endpoints.is_empty() {
                return Ok(endpoints);
            }
        }
    }
    anyhow::bail!(
        "no cluster named: pass --endpoints HOST:PORT,... or set CUTTLE_ENDPOINTS, or start `cuttle dev` (it writes {})",
        dev_endpoint_files()
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    )
}

/// One member in `cluster status --output json`.
#[derive(serde::Serialize)]
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// Its address.
    pub addr: String,
    /// leader, follower or learner.
    pub role: String,
    /// The last log index the leader knows it holds.
    pub matched_index: u64,
    /// It answered recently.
    pub healthy: bool,
}

/// `cluster status --output json`: `{"leader_id": 1, "term": 3, "members": [...]}`.
#[derive(serde::Serialize)]
pub struct StatusView {
    /// The leader, if one is known.
    pub leader_id: Option<u64>,
    /// The current term.
    pub term: u64,
    /// The node that answered.
    pub answered_by: u64,
    /// The members.
    pub members: Vec<MemberView>,
}

/// Reads the status.
pub async fn status(endpoints: &Endpoints) -> anyhow::Result<StatusView> {
    let reply = endpoints
        .client()?
        .status()
        .await
        .context("cannot read the cluster status")?;
    Ok(StatusView {
        leader_id: (reply.leader_id != 0).then_some(reply.leader_id),
        term: reply.term,
        answered_by: reply.node_id,
        members: reply
            .members
            .into_iter()
            .map(|m| MemberView {
                id: m.id,
                addr: m.addr,
                role: m.role,
                matched_index: m.matched_index,
                healthy: m.healthy,
            })
            .collect(),
    })
}

/// The status as aligned text.
pub fn status_text(view: &StatusView) -> String {
    let mut out = match view.leader_id {
        Some(leader) => format!("leader {leader}, term {}\n", view.term),
        None => format!(
            "no leader known (term {}), answered by node {}\n",
            view.term, view.answered_by
        ),
    };
    out.push_str(&format!(
        "{:>4}  {:<22}  {:<8}  {:>8}  {}\n",
        "id", "addr", "role", "matched", "healthy"
    ));
    for m in &view.members {
        let healthy = if m.healthy { "yes" } else { "no" };
        out.push_str(&format!(
            "{:>4}  {:<22}  {:<8}  {:>8}  {healthy}\n",
            m.id, m.addr, m.role, m.matched_index
        ));
    }
    out
}

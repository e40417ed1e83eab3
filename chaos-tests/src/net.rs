//! The network of a run: when the harness runs as root, every host (each node, each agent, the
//! clients) gets a network namespace of its own with one address in 10.213.0.0/16, joined by a
//! bridge that lives in one more namespace of the run (the "hub"). Nothing is added to the
//! machine's own namespace. A link is cut by a `blackhole` route to the peer in both hosts'
//! namespaces, so packets vanish as behind a dead switch; healing deletes the routes.
//!
//! Without root (or without `ip`), hosts share 127.0.0.1 and links cannot be cut: the nemesis then
//! leaves partitions out and says so.
//!
//! Namespaces are named `cuttle-chaos-<pid>-<host>`; [`Net`] deletes every one it made when
//! dropped, and `cuttle-chaos cleanup` removes those of harness processes that no longer exist.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// The prefix of every namespace a run creates.
pub const NETNS_PREFIX: &str = "cuttle-chaos-";

/// Hosts per run at most (addresses 10.213.0.1 to 10.213.0.250).
pub const HOSTS_MAX: usize = 250;

/// Why the network could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("cannot run `ip`: {0}")]
    Spawn(std::io::Error),
    #[error("cannot open namespace {name}: {source}")]
    Open {
        name: String,
        source: std::io::Error,
    },
    #[error("{0} hosts; a run has at most {HOSTS_MAX}")]
    TooMany(usize),
    #[error("unknown host {0}")]
    UnknownHost(String),
}

struct Namespace {
    name: String,
    ip: String,
    file: std::fs::File,
}

/// The hosts of a run and the links between them.
pub struct Net {
    /// `None`: everything on 127.0.0.1.
    spaces: Option<Spaces>,
}

struct Spaces {
    hub: String,
    hosts: BTreeMap<String, Namespace>,
    cuts: BTreeSet<(String, String)>,
}

fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether namespaces can be used here: root and a working `ip`.
pub fn namespaces_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Net {
    /// Everything on 127.0.0.1.
    pub fn loopback() -> Net {
        Net { spaces: None }
    }

    /// One namespace per host in `hosts`, all on one bridge.
    pub fn namespaces(hosts: &[String]) -> Result<Net, NetError> {
        if hosts.len() > HOSTS_MAX {
            return Err(NetError::TooMany(hosts.len()));
        }
        let prefix = format!("{NETNS_PREFIX}{}-", std::process::id());
        let hub = format!("{prefix}hub");
        let mut net = Net {
            spaces: Some(Spaces {
                hub: hub.clone(),
                hosts: BTreeMap::new(),
                cuts: BTreeSet::new(),
            }),
        };
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (index, host) in hosts.iter().enumerate() {
            let name = format!("{prefix}{index}");
            ip(&["netns", "add", &name])?;
            let file = std::fs::File::open(format!("/var/run/netns/{name}")).map_err(|source| {
                NetError::Open {
                    name: name.clone(),
                    source,
                }
            })?;
            let address = format!("10.213.0.{}", index + 1);
            net.spaces.as_mut().expect("namespaces").hosts.insert(
                host.clone(),
                Namespace {
                    name: name.clone(),
                    ip: address.clone(),
                    file,
                },
            );
            let port = format!("p{index}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &name,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{address}/16"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Whether links can be cut.
    pub fn can_partition(&self) -> bool {
        self.spaces.is_some()
    }

    /// The address other hosts reach `host` at.
    pub fn ip(&self, host: &str) -> String {
        match &self.spaces {
            None => "127.0.0.1".to_string(),
            Some(spaces) => spaces
                .hosts
                .get(host)
                .map(|h| h.ip.clone())
                .unwrap_or_else(|| "127.0.0.1".to_string()),
        }
    }

    /// A command that runs `program` inside `host`'s namespace.
    pub fn command(&self, host: &str, program: &std::path::Path) -> Command {
        let namespace = self.spaces.as_ref().and_then(|s| s.hosts.get(host));
        command_in(namespace.map(|n| &n.file), program)
    }

    /// A handle on `host`'s namespace for [`command_in`] on other threads.
    pub fn handle(&self, host: &str) -> Option<std::fs::File> {
        let namespace = self.spaces.as_ref()?.hosts.get(host)?;
        namespace.file.try_clone().ok()
    }

    /// Cuts the link between `a` and `b` both ways. Cutting a cut link changes nothing.
    pub fn cut(&mut self, a: &str, b: &str) -> Result<(), NetError> {
        let Some(spaces) = self.spaces.as_mut() else {
            return Ok(());
        };
        let key = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        if spaces.cuts.contains(&key) {
            return Ok(());
        }
        let host = |name: &str| {
            spaces
                .hosts
                .get(name)
                .ok_or_else(|| NetError::UnknownHost(name.to_string()))
        };
        let (ha, hb) = (host(a)?, host(b)?);
        ip(&[
            "-n",
            &ha.name,
            "route",
            "add",
            "blackhole",
            &format!("{}/32", hb.ip),
        ])?;
        ip(&[
            "-n",
            &hb.name,
            "route",
            "add",
            "blackhole",
            &format!("{}/32", ha.ip),
        ])?;
        spaces.cuts.insert(key);
        Ok(())
    }

    /// Restores every cut link.
    pub fn heal_all(&mut self) -> Result<(), NetError> {
        let Some(spaces) = self.spaces.as_mut() else {
            return Ok(());
        };
        let cuts: Vec<(String, String)> = spaces.cuts.iter().cloned().collect();
        for (a, b) in cuts {
            let (ha, hb) = (&spaces.hosts[&a], &spaces.hosts[&b]);
            ip(&[
                "-n",
                &ha.name,
                "route",
                "del",
                "blackhole",
                &format!("{}/32", hb.ip),
            ])?;
            ip(&[
                "-n",
                &hb.name,
                "route",
                "del",
                "blackhole",
                &format!("{}/32", ha.ip),
            ])?;
            spaces.cuts.remove(&(a, b));
        }
        Ok(())
    }

    /// Every host with a namespace (none on loopback).
    pub fn hosts(&self) -> Vec<String> {
        self.spaces
            .as_ref()
            .map(|s| s.hosts.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The links cut now.
    pub fn cuts(&self) -> Vec<(String, String)> {
        self.spaces
            .as_ref()
            .map(|s| s.cuts.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(spaces) = self.spaces.take() {
            for namespace in spaces.hosts.values() {
                let _ = ip(&["netns", "del", &namespace.name]);
            }
            let _ = ip(&["netns", "del", &spaces.hub]);
        }
    }
}

/// A command that runs `program` in the namespace `namespace` is a handle of (here if `None`).
/// The handle must stay open until the command is spawned.
pub fn command_in(namespace: Option<&std::fs::File>, program: &std::path::Path) -> Command {
    let mut command = Command::new(program);
    if let Some(file) = namespace {
        let fd = file.as_raw_fd();
        // SAFETY: setns is async-signal-safe; the caller keeps the file open while it spawns.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command
}

/// Deletes the namespaces of harness processes that no longer run (after a kill -9 of the
/// harness, which leaves no chance to clean up); returns their names.
pub fn cleanup_stale() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive && ip(&["netns", "del", name]).is_ok() {
            removed.push(name.to_string());
        }
    }
    removed
}

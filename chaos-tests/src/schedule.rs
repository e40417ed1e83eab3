//! The fault plan of a run, drawn from its seed: which fault starts when and how long it holds.
//! Pure: the same seed, time and nemeses give the same plan. Who "the leader" is gets resolved
//! when the fault starts; the random choices among nodes and agents are drawn here.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The nemesis families a run can use (`--nemesis kill,pause,partition,...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    /// kill -9 and restart: the leader, a random node, a majority.
    Kill,
    /// SIGSTOP and SIGCONT: the leader or a random node.
    Pause,
    /// Cut links: isolate the leader, majority/minority, a bridge, an agent from every node.
    Partition,
    /// kill -9 of an agent and its restart, or SIGSTOP of an agent and SIGCONT.
    Agent,
    /// SIGTERM and restart of every node in turn.
    Rolling,
    /// A spare node added to the cluster under load (`cuttle cluster add`), removed again at the
    /// end of the fault (`cuttle cluster remove`).
    Member,
}

impl Nemesis {
    /// Parses a comma-separated list; `none` or an empty list is no faults.
    pub fn parse_list(text: &str) -> Result<Vec<Nemesis>, String> {
        let mut list = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let nemesis = match word {
                "none" => continue,
                "kill" => Nemesis::Kill,
                "pause" => Nemesis::Pause,
                "partition" => Nemesis::Partition,
                "agent" => Nemesis::Agent,
                "rolling" => Nemesis::Rolling,
                "member" => Nemesis::Member,
                other => {
                    return Err(format!(
                        "unknown nemesis {other:?}: use kill, pause, partition, agent, rolling, member or none"
                    ))
                }
            };
            if !list.contains(&nemesis) {
                list.push(nemesis);
            }
        }
        Ok(list)
    }
}

/// One fault, with its random choices made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    KillLeader,
    /// Node index (0-based).
    KillNode {
        node: usize,
    },
    /// A majority of the nodes, by index.
    KillMajority {
        nodes: Vec<usize>,
    },
    PauseLeader,
    PauseNode {
        node: usize,
    },
    /// The leader cut off from every other host (nodes, agents, clients).
    IsolateLeader,
    /// The nodes split in two groups with no link between them; `minority` is the smaller one.
    SplitNodes {
        minority: Vec<usize>,
    },
    /// Two groups that cannot talk to each other, both linked to one bridge node.
    Bridge {
        bridge: usize,
        left: Vec<usize>,
    },
    /// An agent cut off from every node.
    CutAgent {
        agent: usize,
    },
    /// A lock contender's client host cut off from every node.
    CutLocker {
        locker: usize,
    },
    KillAgent {
        agent: usize,
    },
    /// SIGSTOP of an agent (its running scripts go on); SIGCONT at the heal.
    PauseAgent {
        agent: usize,
    },
    /// Every node in turn: SIGTERM, restart, wait until it is back.
    RollingRestart,
    /// The spare node `node` (index) joins the cluster; it is removed when the fault ends.
    GrowShrink {
        node: usize,
    },
}

impl Fault {
    /// A short name for the history and the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillNode { .. } => "kill-node",
            Fault::KillMajority { .. } => "kill-majority",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseNode { .. } => "pause-node",
            Fault::IsolateLeader => "isolate-leader",
            Fault::SplitNodes { .. } => "split-nodes",
            Fault::Bridge { .. } => "bridge",
            Fault::CutAgent { .. } => "cut-agent",
            Fault::CutLocker { .. } => "cut-locker",
            Fault::KillAgent { .. } => "kill-agent",
            Fault::PauseAgent { .. } => "pause-agent",
            Fault::RollingRestart => "rolling-restart",
            Fault::GrowShrink { .. } => "grow-shrink",
        }
    }
}

/// A fault at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// From the start of the workload.
    pub at_ms: u64,
    /// How long it holds before it is healed.
    pub hold_ms: u64,
    pub fault: Fault,
}

/// Quiet time before each fault.
pub const QUIET_MS: (u64, u64) = (2_000, 5_000);
/// How long a fault holds.
pub const HOLD_MS: (u64, u64) = (3_000, 8_000);
/// No fault starts later than this before the end of the workload.
pub const TAIL_MS: u64 = 3_000;

/// What a plan is drawn for.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    pub seed: u64,
    pub time_ms: u64,
    pub nemeses: &'a [Nemesis],
    pub nodes: usize,
    pub agents: usize,
    /// Lock contender client hosts.
    pub lockers: usize,
    /// Whether links can be cut (network namespaces).
    pub partitions: bool,
}

fn pick(rng: &mut StdRng, count: usize, from: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..from).collect();
    for i in 0..count.min(from) {
        let j = rng.gen_range(i..from);
        all.swap(i, j);
    }
    all.truncate(count.min(from));
    all.sort_unstable();
    all
}

fn draw(rng: &mut StdRng, nemesis: Nemesis, input: &PlanInput) -> Fault {
    let n = input.nodes;
    match nemesis {
        Nemesis::Kill => match rng.gen_range(0..3) {
            0 => Fault::KillLeader,
            1 => Fault::KillNode {
                node: rng.gen_range(0..n),
            },
            _ => Fault::KillMajority {
                nodes: pick(rng, n / 2 + 1, n),
            },
        },
        Nemesis::Pause => match rng.gen_range(0..2) {
            0 => Fault::PauseLeader,
            _ => Fault::PauseNode {
                node: rng.gen_range(0..n),
            },
        },
        // Without namespaces only an agent can be cut off (by its proxies).
        Nemesis::Partition if !input.partitions => Fault::CutAgent {
            agent: rng.gen_range(0..input.agents.max(1)),
        },
        Nemesis::Partition => match rng.gen_range(0..5) {
            0 => Fault::IsolateLeader,
            1 => Fault::SplitNodes {
                minority: pick(rng, (n - 1) / 2, n),
            },
            2 if n >= 3 => {
                let bridge = rng.gen_range(0..n);
                let others: Vec<usize> = (0..n).filter(|i| *i != bridge).collect();
                let left = others[..others.len() / 2].to_vec();
                Fault::Bridge { bridge, left }
            }
            3 if input.lockers > 0 => Fault::CutLocker {
                locker: rng.gen_range(0..input.lockers),
            },
            _ => Fault::CutAgent {
                agent: rng.gen_range(0..input.agents.max(1)),
            },
        },
        Nemesis::Agent => {
            let agent = rng.gen_range(0..input.agents.max(1));
            if rng.gen_bool(0.5) {
                Fault::KillAgent { agent }
            } else {
                Fault::PauseAgent { agent }
            }
        }
        Nemesis::Rolling => Fault::RollingRestart,
        // The spare is the node after the initial members.
        Nemesis::Member => Fault::GrowShrink { node: n },
    }
}

/// The plan: quiet, fault, quiet, fault, ... until [`TAIL_MS`] before the end. When links
/// cannot be cut, the only partition is an agent cut off from every node.
pub fn plan(input: &PlanInput) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(input.seed);
    let usable: Vec<Nemesis> = input.nemeses.to_vec();
    let mut planned = Vec::new();
    if usable.is_empty() || input.nodes == 0 {
        return planned;
    }
    let mut at = 0;
    loop {
        at += rng.gen_range(QUIET_MS.0..=QUIET_MS.1);
        let hold = rng.gen_range(HOLD_MS.0..=HOLD_MS.1);
        if at + hold + TAIL_MS > input.time_ms {
            return planned;
        }
        let nemesis = usable[rng.gen_range(0..usable.len())];
        planned.push(Planned {
            at_ms: at,
            hold_ms: hold,
            fault: draw(&mut rng, nemesis, input),
        });
        at += hold;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(seed: u64, nemeses: &[Nemesis], partitions: bool) -> PlanInput<'_> {
        PlanInput {
            seed,
            time_ms: 60_000,
            nemeses,
            nodes: 3,
            agents: 5,
            lockers: 2,
            partitions,
        }
    }

    #[test]
    fn a_seed_gives_one_plan_and_faults_never_overlap() {
        let all = [
            Nemesis::Kill,
            Nemesis::Pause,
            Nemesis::Partition,
            Nemesis::Agent,
        ];
        let a = plan(&input(42, &all, true));
        assert_eq!(a, plan(&input(42, &all, true)));
        assert_ne!(a, plan(&input(43, &all, true)));
        assert!(a.len() >= 4, "{a:?}");
        for pair in a.windows(2) {
            assert!(pair[0].at_ms + pair[0].hold_ms < pair[1].at_ms);
        }
        let last = a.last().unwrap();
        assert!(last.at_ms + last.hold_ms + TAIL_MS <= 60_000);
        for planned in &a {
            if let Fault::KillMajority { nodes } = &planned.fault {
                assert_eq!(nodes.len(), 2);
            }
            if let Fault::SplitNodes { minority } = &planned.fault {
                assert_eq!(minority.len(), 1);
            }
        }
    }

    #[test]
    fn without_namespaces_the_only_partition_cuts_an_agent_off() {
        let plan = plan(&input(7, &[Nemesis::Partition, Nemesis::Kill], false));
        assert!(
            plan.iter().any(|p| p.fault.kind() == "cut-agent"),
            "{plan:?}"
        );
        assert!(plan
            .iter()
            .all(|p| p.fault.kind().starts_with("kill") || p.fault.kind() == "cut-agent"));
    }

    #[test]
    fn nemesis_lists_parse() {
        assert_eq!(
            Nemesis::parse_list("partition,kill,pause,kill").unwrap(),
            [Nemesis::Partition, Nemesis::Kill, Nemesis::Pause]
        );
        assert!(Nemesis::parse_list("none").unwrap().is_empty());
        assert!(Nemesis::parse_list("flood").is_err());
    }
}

//! Fencing tokens as their users saw them: each agent accepts, per lock, only rising tokens; the
//! holders of a named lock of capacity 1 start in token order.

use super::intervals::LockHold;
use super::{Findings, Verdict};
use crate::history::Event;
use std::collections::BTreeMap;

/// Per agent and per lock (`target`, `lock:NAME`), the tokens of the units it started rise
/// strictly, in the order of its journal.
pub fn agent_tokens_rise(history: &[Event]) -> Verdict {
    let mut findings = Findings::new(
        "agent-tokens-rise",
        "each agent starts units with strictly rising fencing tokens per lock",
    );
    let mut last: BTreeMap<(&str, String), (u64, u64)> = BTreeMap::new();
    for event in history {
        let Event::Journal { agent, record } = event else {
            continue;
        };
        if record["event"] != "start" {
            continue;
        }
        let token = record["token"].as_u64().unwrap_or(0);
        let unit = record["unit"].as_u64().unwrap_or(0);
        let locks = record["locks"].as_array().cloned().unwrap_or_default();
        for lock in locks {
            let lock = lock.as_str().unwrap_or("?").to_string();
            findings.checked(1);
            let key = (agent.as_str(), lock.clone());
            if let Some((previous, previous_unit)) = last.get(&key) {
                if token <= *previous {
                    findings.violation(format!(
                        "agent {agent} started unit {unit} with token {token} on {lock} after unit {previous_unit} with token {previous}"
                    ));
                }
            }
            last.insert(key, (token, unit));
        }
    }
    findings.verdict()
}

/// The holders of each named lock of capacity 1 start in strictly rising token order, and no two
/// holders of any named lock share a token.
pub fn lock_tokens_rise(holds: &[LockHold]) -> Verdict {
    let mut findings = Findings::new(
        "lock-tokens-rise",
        "holders of a named lock of capacity 1 start in strictly rising token order",
    );
    let mut last: BTreeMap<&str, &LockHold> = BTreeMap::new();
    let mut tokens: BTreeMap<u64, &LockHold> = BTreeMap::new();
    for hold in holds {
        findings.checked(1);
        if let Some(other) = tokens.insert(hold.token, hold) {
            findings.violation(format!(
                "{} and {} both hold token {}",
                other.holder, hold.holder, hold.token
            ));
        }
        if hold.capacity != 1 {
            continue;
        }
        if let Some(previous) = last.get(hold.name.as_str()) {
            if hold.token <= previous.token {
                findings.violation(format!(
                    "lock {}: {} started at {} with token {} after {} with token {}",
                    hold.name,
                    hold.holder,
                    hold.start_us,
                    hold.token,
                    previous.holder,
                    previous.token
                ));
            }
        }
        last.insert(&hold.name, hold);
    }
    findings.verdict()
}

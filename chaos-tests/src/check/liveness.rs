//! Liveness after the final heal: with every node and agent back and the network whole, the
//! cluster ends every task within the bound the run states (`liveness_bound_ms`).

use super::{Findings, Verdict};
use crate::history::Event;

fn marker(history: &[Event], name: &str) -> Option<(u64, u64)> {
    history.iter().find_map(|e| match e {
        Event::Marker { t_us, what, value } if what == name => Some((*t_us, *value)),
        _ => None,
    })
}

/// Everything queued at the final heal ended within the bound.
pub fn queued_work_ends(history: &[Event]) -> Verdict {
    let mut findings = Findings::new(
        "liveness",
        "after the final heal every task ends within the stated bound",
    );
    let (Some((healed_us, _)), Some((_, bound_ms))) = (
        marker(history, "healed"),
        marker(history, "liveness_bound_ms"),
    ) else {
        findings.violation("the run never healed: no liveness phase".to_string());
        return findings.verdict();
    };
    findings.checked(1);
    match marker(history, "quiescent") {
        Some((at, 1)) if at.saturating_sub(healed_us) <= bound_ms * 1000 => {}
        Some((at, 1)) => findings.violation(format!(
            "every task ended only {} ms after the heal; the bound is {bound_ms} ms",
            (at - healed_us) / 1000
        )),
        _ => {
            for event in history {
                if let Event::Final(task) = event {
                    if !super::lost::FINAL_STATES.contains(&task.state.as_str()) {
                        findings.violation(format!(
                            "task {} is still {} {bound_ms} ms after the heal",
                            task.task, task.state
                        ));
                    }
                }
            }
            if findings.violations == 0 {
                findings.violation(format!(
                    "the cluster could not be read to quiescence within {bound_ms} ms"
                ));
            }
        }
    }
    findings.verdict()
}

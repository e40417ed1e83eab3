//! FIFO per target, where the history shows it: units request their target in creation order
//! (unit ids rise with their lock requests), the target lock grants in request order with nothing
//! overtaking a waiting exclusive request (semantics U2), and every grant takes the next fencing
//! token. So of two first attempts on one target of which at least one is exclusive, the older
//! unit must carry the smaller token. Shared units may pass each other, so pairs of shared units
//! are not compared.
//!
//! Every unit is a first attempt: the core creates each unit with attempt 1 and never dispatches
//! it again (a unit whose agent is lost ends `TargetLost` and its task fails, semantics E4 and
//! `raft/src/sched/units.rs`), so this compares every unit that ran. Should a later attempt ever
//! appear, it is counted in a note and left out, because its place in the target's queue cannot
//! be read from the history: it would re-enter the queue when the cluster declares the agent lost
//! (a step no client or agent records), and the units it would have to be compared with enter the
//! queue when their stage starts, which the history does not show either (a task may wait for its
//! tag or the cap long after its submission was acknowledged). Tokens order grants, not
//! requests, so they cannot stand in for either.

use super::intervals::UnitRun;
use super::{Findings, Verdict};
use std::collections::BTreeMap;

/// No unit is granted its target ahead of an older unit when either of them is exclusive.
pub fn fifo_per_target(runs: &[UnitRun]) -> Verdict {
    let mut findings = Findings::new(
        "fifo-per-target",
        "on each target, no unit is granted ahead of an older one when either is exclusive",
    );
    let mut by_target: BTreeMap<&str, Vec<&UnitRun>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.attempt == 1) {
        by_target.entry(&run.target).or_default().push(run);
    }
    let later = runs.iter().filter(|r| r.attempt != 1).count();
    if later > 0 {
        findings.note(format!(
            "{later} later attempts left out (the core makes none; their requests are not in the history)"
        ));
    }
    for list in by_target.values_mut() {
        list.sort_by_key(|r| r.unit);
        findings.checked(list.len());
        // For each exclusive unit: every older unit has a smaller token (prefix maximum), and
        // every younger unit a larger one (suffix minimum).
        let mut prefix_max: Vec<Option<&UnitRun>> = Vec::with_capacity(list.len());
        let mut best: Option<&UnitRun> = None;
        for run in list.iter() {
            prefix_max.push(best);
            if best.is_none_or(|b| run.token > b.token) {
                best = Some(run);
            }
        }
        let mut suffix_min: Vec<Option<&UnitRun>> = vec![None; list.len()];
        let mut best: Option<&UnitRun> = None;
        for (index, run) in list.iter().enumerate().rev() {
            suffix_min[index] = best;
            if best.is_none_or(|b| run.token < b.token) {
                best = Some(run);
            }
        }
        for (index, run) in list.iter().enumerate() {
            if !run.exclusive {
                continue;
            }
            if let Some(older) = prefix_max[index].filter(|o| o.token > run.token) {
                findings.violation(format!(
                    "{} was granted after younger {}",
                    older.describe(),
                    run.describe()
                ));
            }
            if let Some(younger) = suffix_min[index].filter(|y| y.token < run.token) {
                findings.violation(format!(
                    "{} was granted after younger {}",
                    run.describe(),
                    younger.describe()
                ));
            }
        }
    }
    findings.verdict()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(unit: u64, token: u64, exclusive: bool) -> UnitRun {
        UnitRun {
            target: "web01".into(),
            task: unit,
            unit,
            attempt: 1,
            token,
            exclusive,
            tag: format!("p{unit}"),
            lock: None,
            start_us: token,
            end_us: token + 1,
            end_stamped: true,
            starts: 1,
        }
    }

    #[test]
    fn an_exclusive_unit_overtaken_or_overtaking_is_caught_and_shared_ones_may_pass() {
        let fine = [
            run(1, 10, true),
            run(2, 11, false),
            run(3, 13, false),
            run(4, 12, false),
        ];
        assert!(
            fifo_per_target(&fine).valid,
            "shared 3 and 4 may pass each other"
        );
        let overtaken = [run(1, 12, true), run(2, 11, false)];
        let verdict = fifo_per_target(&overtaken);
        assert!(!verdict.valid);
        assert!(verdict.offenders[0].contains("unit 1 "), "{verdict:?}");
        let overtaking = [run(1, 12, false), run(2, 11, true)];
        assert!(!fifo_per_target(&overtaking).valid);
        // A later attempt is not compared, but it shows.
        let mut again = run(1, 12, true);
        again.attempt = 2;
        let verdict = fifo_per_target(&[again, run(2, 11, false)]);
        assert!(verdict.valid);
        assert!(verdict.notes[0].contains("1 later attempts"), "{verdict:?}");
    }
}

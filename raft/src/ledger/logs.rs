//! Task logs: the output agents report for each unit, and the lines the cluster writes itself
//! (a unit dispatched, ended), kept per task up to a size limit with a visible truncation notice.
//! Each output batch of a unit attempt carries a sequence number, so a batch reported again after
//! a reconnect or a leader change is kept once.

use crate::sched::ids::UnitId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default most bytes of text one task's log keeps.
pub const TASK_LOG_BYTES_DEFAULT: u64 = 1 << 20;
/// Longest line kept; longer ones are cut.
pub const LOG_LINE_BYTES_MAX: usize = 16 * 1024;
/// Most lines in one reported batch.
pub const LOG_BATCH_LINES_MAX: usize = 4_096;

/// Where a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogStream {
    /// The script's standard output.
    Stdout,
    /// The script's standard error.
    Stderr,
    /// The agent or the cluster.
    System,
}

impl LogStream {
    /// `stdout`, `stderr` or `system`.
    pub fn name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }
}

/// One line of a task's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was written (the agent's clock for script output, the leader's for the cluster's).
    pub ts_ms: u64,
    /// The unit it belongs to; `None` for lines about the whole task.
    pub unit: Option<UnitId>,
    /// Its stream.
    pub stream: LogStream,
    /// The text, without its line end.
    pub text: String,
}

/// One task's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLog {
    /// The lines kept, in the order they were recorded.
    pub lines: Vec<LogLine>,
    /// Bytes of text kept.
    pub bytes: u64,
    /// Lines dropped since the log reached its limit.
    pub dropped_lines: u64,
    /// Per unit attempt, the next output batch expected.
    next_batch: BTreeMap<(UnitId, u32), u64>,
}

impl TaskLog {
    /// Records a cluster line; cluster lines are kept even past the limit (they are few and say
    /// how the task went), except that past twice the limit they are dropped too.
    pub fn system(&mut self, ts_ms: u64, unit: Option<UnitId>, text: String, limit_bytes: u64) {
        if self.bytes + text.len() as u64 > limit_bytes.saturating_mul(2) {
            self.dropped_lines += 1;
            return;
        }
        self.bytes += text.len() as u64;
        self.lines.push(LogLine {
            ts_ms,
            unit,
            stream: LogStream::System,
            text,
        });
    }

    /// Whether batch `seq` of this unit attempt is new (earlier batches, already kept, are not).
    pub fn is_new_batch(&self, unit: UnitId, attempt: u32, seq: u64) -> bool {
        seq >= self.next_batch.get(&(unit, attempt)).copied().unwrap_or(0)
    }

    /// Appends a batch the agent reported; lines past the limit are counted, and the first line
    /// dropped is replaced by a notice. Sensitive values in `secrets` are masked.
    pub fn append_batch(
        &mut self,
        unit: UnitId,
        attempt: u32,
        seq: u64,
        lines: Vec<LogLine>,
        secrets: &[&str],
        limit_bytes: u64,
    ) {
        debug_assert!(self.is_new_batch(unit, attempt, seq));
        self.next_batch.insert((unit, attempt), seq + 1);
        for mut line in lines {
            line.unit = Some(unit);
            line.text = mask(cut(line.text), secrets);
            let len = line.text.len() as u64;
            if self.bytes + len > limit_bytes {
                if self.dropped_lines == 0 {
                    let notice = format!(
                        "[cuttle] this task's log reached its limit of {limit_bytes} bytes: later output is not kept"
                    );
                    self.bytes += notice.len() as u64;
                    self.lines.push(LogLine {
                        ts_ms: line.ts_ms,
                        unit: Some(unit),
                        stream: LogStream::System,
                        text: notice,
                    });
                }
                self.dropped_lines += 1;
                continue;
            }
            self.bytes += len;
            self.lines.push(line);
        }
    }
}

fn cut(mut text: String) -> String {
    if text.len() > LOG_LINE_BYTES_MAX {
        let mut end = LOG_LINE_BYTES_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [line cut]");
    }
    text
}

fn mask(text: String, secrets: &[&str]) -> String {
    if secrets.iter().any(|s| text.contains(s)) {
        let mut text = text;
        for secret in secrets {
            text = text.replace(secret, "********");
        }
        text
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> LogLine {
        LogLine {
            ts_ms: 1,
            unit: None,
            stream: LogStream::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn a_batch_reported_twice_is_kept_once() {
        let mut log = TaskLog::default();
        let u = UnitId(3);
        assert!(log.is_new_batch(u, 1, 0));
        log.append_batch(u, 1, 0, vec![line("a")], &[], 100);
        assert!(!log.is_new_batch(u, 1, 0));
        assert!(log.is_new_batch(u, 1, 1));
        assert!(
            log.is_new_batch(u, 2, 0),
            "another attempt has its own batches"
        );
        assert_eq!(log.lines.len(), 1);
    }

    #[test]
    fn output_past_the_limit_is_dropped_with_one_notice() {
        let mut log = TaskLog::default();
        let lines = (0..10).map(|i| line(&format!("line {i:02}"))).collect();
        log.append_batch(UnitId(1), 1, 0, lines, &[], 30);
        assert_eq!(
            log.lines.len(),
            5,
            "four lines of 7 bytes fit in 30, then the notice"
        );
        assert!(log.lines[4].text.contains("reached its limit of 30 bytes"));
        assert_eq!(log.dropped_lines, 6);
    }

    #[test]
    fn sensitive_values_are_masked_longest_first() {
        let mut log = TaskLog::default();
        log.append_batch(
            UnitId(1),
            1,
            0,
            vec![line("password=hunter22 and hunter2")],
            &["hunter22", "hunter2"],
            1000,
        );
        assert_eq!(log.lines[0].text, "password=******** and ********");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let text = "é".repeat(LOG_LINE_BYTES_MAX);
        let cut = cut(text);
        assert!(cut.ends_with(" [line cut]"));
        assert!(cut.len() <= LOG_LINE_BYTES_MAX + 11);
    }
}

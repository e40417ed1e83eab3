//! The outbox of reports to the cluster: numbering, acknowledgement, resending after a re-attach,
//! and the bound on what an unreachable cluster makes the agent hold. Pure: no I/O, no clock.
//!
//! Each report gets `report_id` = previous + 1, from 1, per agent process. It stays until a
//! `ReportAck` covers it; a new session sends everything unacknowledged again, in order, before
//! anything new. At most [`REPORTS_IN_FLIGHT_MAX`] reports are sent and unacknowledged at once, so
//! a slow cluster slows the agent's sending instead of filling the stream.
//!
//! The outbox holds at most [`OUTBOX_OUTPUT_BYTES_MAX`] of output text and [`OUTBOX_REPORTS_MAX`]
//! reports. Beyond that, output batches are dropped, and the next report of that unit is preceded
//! by one system line "N lines of output lost: the cluster was unreachable". `UnitStarted` and
//! `UnitFinished` are never dropped (there is at most one of each per unit attempt).

use cuttle_proto::v1::agent_message::Kind;
use cuttle_proto::v1::{AgentMessage, LogLine, LogStream, UnitFinished, UnitOutput, UnitStarted};
use std::collections::{BTreeMap, VecDeque};

/// Output text the outbox holds at most.
pub const OUTBOX_OUTPUT_BYTES_MAX: usize = 16 << 20;
/// Reports the outbox holds at most (starts and ends may go beyond it).
pub const OUTBOX_REPORTS_MAX: usize = 100_000;
/// Reports sent and not yet acknowledged at most.
pub const REPORTS_IN_FLIGHT_MAX: usize = 256;

/// A report before it is numbered.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Started {
        unit: u64,
        attempt: u32,
    },
    Output {
        unit: u64,
        attempt: u32,
        lines: Vec<LogLine>,
    },
    Finished {
        unit: u64,
        attempt: u32,
        exit_code: i32,
        reason: String,
    },
}

#[derive(Clone, Debug)]
struct Entry {
    report_id: u64,
    message: AgentMessage,
    output_bytes: usize,
}

/// Numbered reports waiting for their acknowledgement.
#[derive(Debug)]
pub struct Outbox {
    next_report_id: u64,
    queue: VecDeque<Entry>,
    output_bytes: usize,
    /// How many entries at the front of `queue` were sent in this session.
    sent: usize,
    /// The next output `seq` per unit attempt.
    seqs: BTreeMap<(u64, u32), u64>,
    /// Lines dropped per unit attempt and not yet announced.
    lost: BTreeMap<(u64, u32), u64>,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::new()
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox {
            next_report_id: 1,
            queue: VecDeque::new(),
            output_bytes: 0,
            sent: 0,
            seqs: BTreeMap::new(),
            lost: BTreeMap::new(),
        }
    }

    /// Queues `report`; `now_ms` stamps the line announcing lost output, if one is due.
    pub fn push(&mut self, report: Report, now_ms: u64) {
        match report {
            Report::Started { unit, attempt } => {
                let started = UnitStarted {
                    report_id: 0,
                    unit,
                    attempt,
                };
                self.enqueue(Kind::Started(started), 0);
            }
            Report::Output {
                unit,
                attempt,
                lines,
            } => {
                let bytes: usize = lines.iter().map(|l| l.text.len()).sum();
                let full = self.output_bytes + bytes > OUTBOX_OUTPUT_BYTES_MAX
                    || self.queue.len() >= OUTBOX_REPORTS_MAX;
                if full {
                    *self.lost.entry((unit, attempt)).or_insert(0) += lines.len() as u64;
                    return;
                }
                self.announce_lost(unit, attempt, now_ms);
                self.enqueue_output(unit, attempt, lines);
            }
            Report::Finished {
                unit,
                attempt,
                exit_code,
                reason,
            } => {
                self.announce_lost(unit, attempt, now_ms);
                self.seqs.remove(&(unit, attempt));
                let finished = UnitFinished {
                    report_id: 0,
                    unit,
                    attempt,
                    exit_code,
                    reason,
                };
                self.enqueue(Kind::Finished(finished), 0);
            }
        }
    }

    fn announce_lost(&mut self, unit: u64, attempt: u32, now_ms: u64) {
        if let Some(count) = self.lost.remove(&(unit, attempt)) {
            let line = LogLine {
                ts_ms: now_ms,
                stream: LogStream::System as i32,
                text: format!("{count} lines of output lost: the cluster was unreachable"),
            };
            self.enqueue_output(unit, attempt, vec![line]);
        }
    }

    fn enqueue_output(&mut self, unit: u64, attempt: u32, lines: Vec<LogLine>) {
        let bytes = lines.iter().map(|l| l.text.len()).sum();
        let seq = self.seqs.entry((unit, attempt)).or_insert(0);
        let output = UnitOutput {
            report_id: 0,
            unit,
            attempt,
            seq: *seq,
            lines,
        };
        *seq += 1;
        self.enqueue(Kind::Output(output), bytes);
    }

    fn enqueue(&mut self, mut kind: Kind, output_bytes: usize) {
        let report_id = self.next_report_id;
        self.next_report_id += 1;
        match &mut kind {
            Kind::Started(m) => m.report_id = report_id,
            Kind::Output(m) => m.report_id = report_id,
            Kind::Finished(m) => m.report_id = report_id,
            Kind::Hello(_) | Kind::Heartbeat(_) => unreachable!("only reports are queued"),
        }
        self.output_bytes += output_bytes;
        let message = AgentMessage { kind: Some(kind) };
        self.queue.push_back(Entry {
            report_id,
            message,
            output_bytes,
        });
    }

    /// Every report up to and including `report_id` is recorded by the cluster.
    pub fn ack(&mut self, report_id: u64) {
        while let Some(front) = self.queue.front() {
            if front.report_id > report_id {
                break;
            }
            self.output_bytes -= front.output_bytes;
            self.queue.pop_front();
            self.sent = self.sent.saturating_sub(1);
        }
    }

    /// A new session: everything unacknowledged goes out again.
    pub fn rewind(&mut self) {
        self.sent = 0;
    }

    /// The next report to send in this session, if the in-flight window allows one.
    pub fn next_to_send(&mut self) -> Option<AgentMessage> {
        if self.sent >= REPORTS_IN_FLIGHT_MAX {
            return None;
        }
        let entry = self.queue.get(self.sent)?;
        self.sent += 1;
        Some(entry.message.clone())
    }

    /// Reports not yet acknowledged.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Output text held, in bytes.
    pub fn output_bytes(&self) -> usize {
        self.output_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(count: usize, bytes_each: usize) -> Vec<LogLine> {
        (0..count)
            .map(|_| LogLine {
                ts_ms: 1,
                stream: 0,
                text: "x".repeat(bytes_each),
            })
            .collect()
    }

    fn ids_and_kinds(outbox: &mut Outbox) -> Vec<(u64, &'static str)> {
        let mut out = Vec::new();
        while let Some(message) = outbox.next_to_send() {
            out.push(match message.kind.unwrap() {
                Kind::Started(m) => (m.report_id, "started"),
                Kind::Output(m) => (m.report_id, "output"),
                Kind::Finished(m) => (m.report_id, "finished"),
                _ => unreachable!(),
            });
        }
        out
    }

    /// Sends and acknowledges everything, window by window.
    fn drain_all(outbox: &mut Outbox) -> Vec<AgentMessage> {
        let mut all = Vec::new();
        loop {
            let window: Vec<AgentMessage> = std::iter::from_fn(|| outbox.next_to_send()).collect();
            if window.is_empty() {
                return all;
            }
            let last = match window.last().and_then(|m| m.kind.clone()) {
                Some(Kind::Started(m)) => m.report_id,
                Some(Kind::Output(m)) => m.report_id,
                Some(Kind::Finished(m)) => m.report_id,
                _ => unreachable!(),
            };
            outbox.ack(last);
            all.extend(window);
        }
    }

    #[test]
    fn reports_are_numbered_and_resent_until_acknowledged() {
        let mut outbox = Outbox::new();
        outbox.push(
            Report::Started {
                unit: 1,
                attempt: 1,
            },
            0,
        );
        outbox.push(
            Report::Output {
                unit: 1,
                attempt: 1,
                lines: lines(2, 3),
            },
            0,
        );
        outbox.push(
            Report::Finished {
                unit: 1,
                attempt: 1,
                exit_code: 0,
                reason: String::new(),
            },
            0,
        );
        assert_eq!(
            ids_and_kinds(&mut outbox),
            vec![(1, "started"), (2, "output"), (3, "finished")]
        );
        assert_eq!(ids_and_kinds(&mut outbox), vec![], "sent once per session");
        outbox.ack(1);
        outbox.rewind();
        assert_eq!(
            ids_and_kinds(&mut outbox),
            vec![(2, "output"), (3, "finished")]
        );
        outbox.ack(3);
        assert!(outbox.is_empty());
        assert_eq!(outbox.output_bytes(), 0);
        outbox.push(
            Report::Started {
                unit: 2,
                attempt: 1,
            },
            0,
        );
        assert_eq!(ids_and_kinds(&mut outbox), vec![(4, "started")]);
    }

    #[test]
    fn no_more_than_the_window_is_in_flight() {
        let mut outbox = Outbox::new();
        for unit in 0..(REPORTS_IN_FLIGHT_MAX as u64 + 5) {
            outbox.push(Report::Started { unit, attempt: 1 }, 0);
        }
        assert_eq!(ids_and_kinds(&mut outbox).len(), REPORTS_IN_FLIGHT_MAX);
        outbox.ack(3);
        assert_eq!(ids_and_kinds(&mut outbox).len(), 3);
    }

    #[test]
    fn output_seqs_rise_per_unit_attempt() {
        let mut outbox = Outbox::new();
        for (unit, attempt) in [(1, 1), (2, 1), (1, 1), (1, 2)] {
            outbox.push(
                Report::Output {
                    unit,
                    attempt,
                    lines: lines(1, 1),
                },
                0,
            );
        }
        let seqs: Vec<(u64, u32, u64)> = std::iter::from_fn(|| outbox.next_to_send())
            .map(|m| match m.kind.unwrap() {
                Kind::Output(o) => (o.unit, o.attempt, o.seq),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(seqs, vec![(1, 1, 0), (2, 1, 0), (1, 1, 1), (1, 2, 0)]);
    }

    #[test]
    fn a_full_outbox_drops_output_and_says_so_but_keeps_starts_and_ends() {
        let mut outbox = Outbox::new();
        let batch_bytes = 64 * 1024;
        let batches_fitting = OUTBOX_OUTPUT_BYTES_MAX / batch_bytes;
        outbox.push(
            Report::Started {
                unit: 1,
                attempt: 1,
            },
            0,
        );
        for _ in 0..batches_fitting + 3 {
            outbox.push(
                Report::Output {
                    unit: 1,
                    attempt: 1,
                    lines: lines(1, batch_bytes),
                },
                0,
            );
        }
        assert_eq!(outbox.output_bytes(), OUTBOX_OUTPUT_BYTES_MAX);
        outbox.push(
            Report::Finished {
                unit: 1,
                attempt: 1,
                exit_code: 0,
                reason: String::new(),
            },
            77,
        );
        assert_eq!(outbox.len(), 1 + batches_fitting + 2);
        let tail = drain_all(&mut outbox);
        let notice = match tail[tail.len() - 2].kind.clone().unwrap() {
            Kind::Output(o) => o,
            other => panic!("expected the notice, got {other:?}"),
        };
        assert_eq!(notice.seq, batches_fitting as u64);
        assert_eq!(notice.lines.len(), 1);
        assert_eq!(
            notice.lines[0].text,
            "3 lines of output lost: the cluster was unreachable"
        );
        assert_eq!(notice.lines[0].stream, LogStream::System as i32);
        assert_eq!(notice.lines[0].ts_ms, 77);
        assert!(matches!(tail.last().unwrap().kind, Some(Kind::Finished(_))));
    }

    #[test]
    fn the_report_count_bound_drops_output_too() {
        let mut outbox = Outbox::new();
        for unit in 0..OUTBOX_REPORTS_MAX as u64 {
            outbox.push(Report::Started { unit, attempt: 1 }, 0);
        }
        outbox.push(
            Report::Output {
                unit: 5,
                attempt: 1,
                lines: lines(4, 1),
            },
            0,
        );
        assert_eq!(outbox.len(), OUTBOX_REPORTS_MAX);
        outbox.push(
            Report::Started {
                unit: 9_999_999,
                attempt: 1,
            },
            0,
        );
        assert_eq!(
            outbox.len(),
            OUTBOX_REPORTS_MAX + 1,
            "starts are never dropped"
        );
        outbox.ack(10);
        outbox.push(
            Report::Output {
                unit: 5,
                attempt: 1,
                lines: lines(1, 1),
            },
            0,
        );
        // The notice of the 4 lost lines comes first, then the batch.
        assert_eq!(outbox.len(), OUTBOX_REPORTS_MAX + 1 - 10 + 2);
    }
}

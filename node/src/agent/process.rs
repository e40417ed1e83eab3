//! Process groups: signalling a unit's group, and recognising a group left behind by a crashed agent
//! (through `/proc`), so that a restarted agent kills only what is really its own unit.

use std::io;

/// Sends `signal` to every process of group `pgid`. A group that no longer exists is not an error.
pub fn signal_group(pgid: i32, signal: i32) -> io::Result<()> {
    // Group 0 would be the agent's own group and 1 is init's: neither is ever a unit's group.
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("process group {pgid} is not a unit's group"),
        ));
    }
    // SAFETY: killpg has no memory-safety preconditions.
    let result = unsafe { libc::killpg(pgid, signal) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(error)
}

/// Whether a process group `pgid` still has a member.
pub fn group_exists(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let result = unsafe { libc::kill(-pgid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Every process id in `/proc`.
fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
        })
}

/// The process group of `pid`, from `/proc/PID/stat`.
fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_process_group(&stat)
}

/// The processes whose process group is `pgid`, from `/proc/PID/stat`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    pids().filter(|pid| group_of(*pid) == Some(pgid)).collect()
}

/// The process group in a `/proc/PID/stat` line. The command name (field 2) may contain spaces
/// and parentheses, so the fields are counted after its last `)`.
fn stat_process_group(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state, ppid, pgrp.
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether process `pid` was started for this unit attempt: its environment holds
/// `CUTTLE_UNIT_ID=<unit>` and `CUTTLE_UNIT_ATTEMPT=<attempt>`.
pub fn runs_unit(pid: i32, unit: u64, attempt: u32) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let unit_entry = format!("CUTTLE_UNIT_ID={unit}");
    let attempt_entry = format!("CUTTLE_UNIT_ATTEMPT={attempt}");
    let mut has_unit = false;
    let mut has_attempt = false;
    for entry in environ.split(|&b| b == 0) {
        has_unit |= entry == unit_entry.as_bytes();
        has_attempt |= entry == attempt_entry.as_bytes();
    }
    has_unit && has_attempt
}

/// The process groups of every process started for this unit attempt, by a scan of `/proc`: how
/// a restarted agent finds what a unit left running when its journal holds no `spawned` record.
pub fn unit_groups(unit: u64, attempt: u32) -> Vec<i32> {
    let mut groups = Vec::new();
    for pid in pids().filter(|pid| runs_unit(*pid, unit, attempt)) {
        if let Some(g) = group_of(pid).filter(|g| *g > 1 && !groups.contains(g)) {
            groups.push(g);
        }
    }
    groups
}

/// Kills group `pgid` with SIGKILL if it still exists and one of its processes was started for this
/// unit attempt (a recycled process group of someone else is left alone). Returns whether it did.
pub fn kill_leftover_unit(pgid: i32, unit: u64, attempt: u32) -> io::Result<bool> {
    if !group_exists(pgid) {
        return Ok(false);
    }
    let ours = group_members(pgid)
        .into_iter()
        .any(|pid| runs_unit(pid, unit, attempt));
    if !ours {
        return Ok(false);
    }
    signal_group(pgid, libc::SIGKILL)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_is_read_after_the_last_parenthesis() {
        let stat = "4242 (we ird) (name)) S 1 4240 4240 0 -1 4194560";
        assert_eq!(stat_process_group(stat), Some(4240));
        assert_eq!(stat_process_group("garbage"), None);
    }

    #[test]
    fn the_agents_own_group_and_init_are_never_signalled() {
        assert!(signal_group(0, libc::SIGTERM).is_err());
        assert!(signal_group(1, libc::SIGTERM).is_err());
        assert!(!group_exists(0));
    }
}

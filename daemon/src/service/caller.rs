//! Who is calling, and whether they still want the answer.
//!
//! A door makes a [`Caller`] from what its transport tells it: FUSE requests carry the caller's
//! fsuid, fsgid and thread id (the supplementary groups are read from `/proc/<pid>/status` when a
//! decision needs them, as libfuse's `fuse_req_getgroups` does); a Unix socket gives
//! `SO_PEERCRED` and `SO_PEERGROUPS`. An [`Interrupt`] is the door's way to tell a long wait that
//! its caller gave up (FUSE INTERRUPT).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The most supplementary groups read for one caller (the kernel's `NGROUPS_MAX`).
pub const GROUPS_MAX: usize = 65_536;

/// Where a caller's supplementary groups come from.
#[derive(Clone, Debug)]
enum Groups {
    /// Given by the door.
    Known(Vec<u32>),
    /// Read from `/proc/<pid>/status` on first use; a caller whose process is gone (or invisible
    /// in our PID namespace) has none, which can only take rights away.
    Pid { pid: u32, read: OnceLock<Vec<u32>> },
}

/// The credentials a request is decided with.
#[derive(Clone, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    groups: Groups,
}

impl Caller {
    /// A caller whose supplementary groups are `groups`.
    pub fn with_groups(uid: u32, gid: u32, groups: Vec<u32>) -> Caller {
        Caller { uid, gid, groups: Groups::Known(groups) }
    }

    /// A caller identified by a FUSE request: its groups are read from `/proc/<pid>/status` when
    /// a decision needs them (pid 0, a process outside our PID namespace, has none).
    pub fn from_pid(uid: u32, gid: u32, pid: u32) -> Caller {
        Caller { uid, gid, groups: Groups::Pid { pid, read: OnceLock::new() } }
    }

    /// The superuser, for the daemon's own work.
    pub fn root() -> Caller {
        Caller::with_groups(0, 0, Vec::new())
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether `gid` is the caller's group or one of its supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        gid == self.gid || self.groups().contains(&gid)
    }

    fn groups(&self) -> &[u32] {
        match &self.groups {
            Groups::Known(groups) => groups,
            Groups::Pid { pid, read } => read.get_or_init(|| read_proc_groups(*pid)),
        }
    }
}

/// The `Groups:` line of `/proc/<pid>/status`; empty when unreadable.
fn read_proc_groups(pid: u32) -> Vec<u32> {
    if pid == 0 {
        return Vec::new();
    }
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => parse_groups(&status),
        Err(error) => {
            tracing::debug!(pid, %error, "supplementary groups unreadable; deciding without them");
            Vec::new()
        }
    }
}

/// The supplementary groups of a `/proc/<pid>/status` text.
fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|list| list.split_whitespace().take(GROUPS_MAX).filter_map(|g| g.parse().ok()).collect())
        .unwrap_or_default()
}

/// Set when the caller of a request no longer wants its answer; long waits look at it and give
/// up with [`super::ServiceError::Interrupted`].
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Option<Arc<AtomicBool>>);

impl Interrupt {
    /// A token that is never set, for calls nobody can interrupt.
    pub fn none() -> Interrupt {
        Interrupt(None)
    }

    /// A token and the flag that sets it.
    pub fn new() -> (Interrupt, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (Interrupt(Some(Arc::clone(&flag))), flag)
    }

    pub fn is_set(&self) -> bool {
        self.0.as_ref().is_some_and(|flag| flag.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_from_the_status_line() {
        let status = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \nNgid:\t0\n";
        assert_eq!(parse_groups(status), vec![4, 24, 27, 1000]);
        assert_eq!(parse_groups("Groups:\t\n"), Vec::<u32>::new());
        assert_eq!(parse_groups("Name:\tx\n"), Vec::<u32>::new());
    }

    #[test]
    fn this_process_groups_are_read() {
        let me = std::process::id();
        let caller = Caller::from_pid(1, 12345, me);
        assert!(caller.in_group(12345), "the primary group");
        let status = std::fs::read_to_string(format!("/proc/{me}/status")).unwrap();
        for gid in parse_groups(&status) {
            assert!(caller.in_group(gid));
        }
        assert!(!Caller::from_pid(1, 1, 0).in_group(0), "pid 0 has no supplementary groups");
    }

    #[test]
    fn interrupts() {
        assert!(!Interrupt::none().is_set());
        let (token, flag) = Interrupt::new();
        assert!(!token.is_set());
        flag.store(true, Ordering::Release);
        assert!(token.is_set());
    }
}

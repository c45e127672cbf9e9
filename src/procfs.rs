//! Reads of /proc/<pid>: the start time that tells a live container from a
//! reused PID, and the process tree used by `kill --all`.

use std::fs;

/// Fields of /proc/<pid>/stat that hpcc needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub ppid: i32,
    /// Clock ticks since boot at which the process started (field 22).
    pub start_time: u64,
    /// The kernel's task flags (field 9).
    pub flags: u64,
}

/// PF_EXITING: the task is in exit(); a PID namespace's init stays there
/// until every process of the namespace has been reaped.
const PF_EXITING: u64 = 0x4;

/// Parses a stat line. The command name may hold spaces and parentheses, so
/// fields are counted from the last ')'.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); start_time is field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
        flags: fields.get(6)?.parse().ok()?,
    })
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// True when `pid` runs (not a zombie) and is the process that started at
/// `start_time`, not a later process that got the same PID.
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match stat(pid) {
        Some(s) => {
            s.start_time == start_time
                && s.state != 'Z'
                && s.state != 'X'
                && s.flags & PF_EXITING == 0
        }
        None => false,
    }
}

/// Every PID currently listed in /proc.
pub fn all_pids() -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Identity of a namespace of `pid`, e.g. "pid:[4026531836]".
pub fn ns_id(pid: i32, ns: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// `root` and all of its descendants: from each process's
/// `task/*/children` lists (a few reads), or from one scan of every
/// process's stat where the kernel lacks those lists
/// (CONFIG_PROC_CHILDREN). A machine may run thousands of processes, and
/// every foreground `run` asks this once.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        match children(out[i]) {
            Some(kids) => out.extend(kids),
            None => return descendants_by_scan(root),
        }
        i += 1;
    }
    out
}

/// The children of `pid` (of every thread of it); None when the kernel
/// does not list them. A process that is gone has none.
fn children(pid: i32) -> Option<Vec<i32>> {
    let tasks = match fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(rd) => rd,
        Err(_) => return Some(Vec::new()),
    };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        let path = t.path().join("children");
        match fs::read_to_string(&path) {
            Ok(text) => out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !t.path().exists() => {}
            Err(_) => return None,
        }
    }
    Some(out)
}

fn descendants_by_scan(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, stat(p)?.ppid)))
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "1234 (my (weird) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let st = stat(me).unwrap();
        assert!(is_alive(me, st.start_time));
        assert!(!is_alive(me, st.start_time + 1));
        assert!(!is_alive(0, 0));
        assert!(descendants(me).contains(&me));
        // The children lists and the full scan both find a child (other
        // tests start and reap children meanwhile, so only it is compared).
        let mut kid = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let k = kid.id() as i32;
        let (a, b) = (descendants(me), descendants_by_scan(me));
        kid.kill().unwrap();
        kid.wait().unwrap();
        assert!(a.contains(&k) && a.contains(&me), "{a:?}");
        assert!(b.contains(&k) && b.contains(&me), "{b:?}");
    }

    #[test]
    fn truncated_stat_is_rejected() {
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }
}

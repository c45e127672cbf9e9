//! runc's rule for mounts in /proc: at /proc itself only a procfs (or a
//! bind of one), below it only the files lxcfs emulates. spec::validate
//! applies it to the destinations a config names; the executor applies it
//! again to where a destination really resolves (a symlink in the rootfs
//! may lead into /proc).

use std::path::{Component, Path, PathBuf};

/// The files under /proc that lxcfs emulates, which runc lets a bind cover.
const PROC_MOUNTS_ALLOWED: [&str; 10] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// `path` with `.` and `..` applied lexically (`..` stops at `/`).
pub fn lexical_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether a mount may go at (lexically cleaned) `dest` in /proc, runc's
/// rule: at /proc itself only a procfs (or a bind of one), below it only
/// the files lxcfs emulates. Anything else could cover /proc/self/attr,
/// /proc/sys or sysrq-trigger, the places masked paths and LSM labels
/// depend on.
pub fn destination_allowed(dest: &Path, is_proc: bool) -> bool {
    let dest = lexical_clean(dest);
    if dest == Path::new("/proc") {
        return is_proc;
    }
    !dest.starts_with("/proc") || PROC_MOUNTS_ALLOWED.iter().any(|a| dest == Path::new(a))
}

/// Whether `dest` is one of the files under /proc a bind may cover.
pub fn file_mountable(dest: &Path) -> bool {
    let dest = lexical_clean(dest);
    PROC_MOUNTS_ALLOWED.iter().any(|a| dest == Path::new(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_destinations() {
        let ok = |d: &str, p: bool| destination_allowed(Path::new(d), p);
        assert!(ok("/proc", true));
        assert!(!ok("/proc", false));
        assert!(ok("/proc/cpuinfo", false));
        assert!(ok("/procx", false));
        assert!(ok("/tmp/proc/sys", false));
        for bad in [
            "/proc/sys",
            "/proc/self/attr/exec",
            "/tmp/../proc/sys",
            "/proc/1/../sys",
            "/proc/./sysrq-trigger",
        ] {
            assert!(!ok(bad, false), "{bad}");
        }
    }

    #[test]
    fn only_the_lxcfs_files_may_be_covered() {
        assert!(file_mountable(Path::new("/proc/./meminfo")));
        assert!(!file_mountable(Path::new("/proc/sys/kernel")));
        assert_eq!(
            lexical_clean(Path::new("/a/../../b/./c")),
            Path::new("/b/c")
        );
    }
}

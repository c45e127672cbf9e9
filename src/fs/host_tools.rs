//! Host programs hpcc runs (getent, newuidmap, newgidmap) or binds into a
//! container (nvidia-smi): looked for on PATH, then in the system
//! directories. An ordinary Debian user's PATH has no sbin directory, and
//! a batch job's PATH may be almost empty; neither may decide whether a
//! tool that is installed is found.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where distributions install system programs, in the order glibc's
/// default PATH lists them.
pub const SYSTEM_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The first executable `name` on `path` (absolute entries only), then in
/// the system directories, then in `extra`.
pub fn find_in(name: &str, path: &str, extra: &[&str]) -> Option<PathBuf> {
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .chain(SYSTEM_DIRS)
        .chain(extra.iter().copied())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `find_in` with our own PATH.
pub fn find(name: &str, extra: &[&str]) -> Option<PathBuf> {
    find_in(name, &std::env::var("PATH").unwrap_or_default(), extra)
}

/// The program to run for `name`: its path when found, else the bare name
/// (so that the error names what is missing).
pub fn program(name: &str) -> PathBuf {
    find(name, &[]).unwrap_or_else(|| PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_directories_are_searched_whatever_the_path() {
        // sh is in /bin (or /usr/bin) on every host the tests run on.
        let sh = find_in("sh", "", &[]).expect("sh in a system directory");
        assert!(sh.starts_with("/usr") || sh.starts_with("/bin"), "{sh:?}");
        // PATH comes first; relative entries are ignored.
        let d = std::env::temp_dir().join(format!("hpcc-tools-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let tool = d.join("sh");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_in("sh", &format!(".:{}", d.display()), &[]),
            Some(tool.clone())
        );
        // A file that is not executable is not a program.
        std::fs::write(d.join("notes"), "").unwrap();
        assert_eq!(find_in("notes", &d.display().to_string(), &[]), None);
        let extra = d.display().to_string();
        assert_eq!(
            find_in("sh", "", &[&extra]),
            Some(sh),
            "system dirs before extra"
        );
        assert_eq!(
            program("no-such-tool-hpcc"),
            PathBuf::from("no-such-tool-hpcc")
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}

//! Finding the program to run, the way runc reports a missing one (podman
//! and Docker match these messages to return exit code 127).

use anyhow::{bail, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves argv[0] against the PATH of the container's environment, not
/// hpcc's own.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = Path::new(arg0);
        match std::fs::metadata(p) {
            Ok(_) if is_executable(p) => return Ok(p.to_path_buf()),
            Ok(_) => bail!("exec: {arg0:?}: permission denied"),
            Err(e) => bail!("exec: {arg0:?}: stat {arg0}: {}", io_reason(&e)),
        }
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(arg0);
        if is_executable(&cand) {
            return Ok(cand);
        }
    }
    bail!("exec: {arg0:?}: executable file not found in $PATH")
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_the_container_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(
            find_executable("sh", &env).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let e = find_executable("no-such-binary-hpcc", &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-binary-hpcc") && e.contains("executable file not found"),
            "{e}"
        );
        let e = find_executable("/no/such", &env).unwrap_err().to_string();
        assert!(e.contains("/no/such") && e.contains("no such file"), "{e}");
    }
}

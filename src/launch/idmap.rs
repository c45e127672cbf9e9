//! uid/gid maps for a new user namespace. An unprivileged caller may write
//! one line mapping its own id; anything else goes through the setuid
//! helpers newuidmap/newgidmap, which check /etc/subuid and /etc/subgid.

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::LinuxIdMapping;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Uid,
    Gid,
}

impl IdKind {
    fn file(self) -> &'static str {
        match self {
            IdKind::Uid => "uid_map",
            IdKind::Gid => "gid_map",
        }
    }
    fn helper(self) -> &'static str {
        match self {
            IdKind::Uid => "newuidmap",
            IdKind::Gid => "newgidmap",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Writer {
    /// Write /proc/PID/{uid,gid}_map ourselves.
    Direct,
    /// Run newuidmap/newgidmap.
    Helper,
}

/// The text the kernel expects in a map file: "inside outside count" lines.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Privileged callers write any map; others only the single line that maps
/// their own id once.
pub fn choose_writer(maps: &[LinuxIdMapping], own_id: u32, privileged: bool) -> Writer {
    let only_self = maps.len() == 1 && maps[0].host_id() == own_id && maps[0].size() == 1;
    if privileged || only_self {
        Writer::Direct
    } else {
        Writer::Helper
    }
}

/// newuidmap/newgidmap's arguments: the pid, then "inside outside count"
/// triples.
pub fn helper_args(pid: i32, maps: &[LinuxIdMapping]) -> Vec<String> {
    let mut args = vec![pid.to_string()];
    for m in maps {
        args.extend([m.container_id(), m.host_id(), m.size()].map(|n| n.to_string()));
    }
    args
}

/// Writes one map for `pid`. `privileged` means we hold CAP_SETUID/SETGID
/// over the parent namespace (real root).
pub fn write_map(pid: i32, kind: IdKind, maps: &[LinuxIdMapping], privileged: bool) -> Result<()> {
    let own = match kind {
        IdKind::Uid => nix::unistd::geteuid().as_raw(),
        IdKind::Gid => nix::unistd::getegid().as_raw(),
    };
    match choose_writer(maps, own, privileged) {
        Writer::Direct => write_direct(&pid.to_string(), kind, maps, privileged),
        Writer::Helper => {
            let out = Command::new(crate::fs::host_tools::program(kind.helper()))
                .args(helper_args(pid, maps))
                .output()
                .map_err(|e| {
                    anyhow!(
                        "running {}: {e} (install the uidmap package to use multi-range {} mappings)",
                        kind.helper(),
                        kind.file()
                    )
                })?;
            if !out.status.success() {
                bail!(
                    "{} failed for mapping {:?}: {} (check /etc/sub{}id)",
                    kind.helper(),
                    map_text(maps).trim(),
                    String::from_utf8_lossy(&out.stderr).trim(),
                    if kind == IdKind::Uid { "u" } else { "g" }
                );
            }
            Ok(())
        }
    }
}

/// Writes a map for this very process, right after it unshared its user
/// namespace (the only case where a process may map itself).
pub fn write_own_map(kind: IdKind, maps: &[LinuxIdMapping]) -> Result<()> {
    write_direct("self", kind, maps, false)
}

/// Writes /proc/`proc`/{uid,gid}_map. Unless we are privileged, the kernel
/// takes an unprivileged gid map only once setgroups(2) is denied in the
/// namespace.
fn write_direct(proc: &str, kind: IdKind, maps: &[LinuxIdMapping], privileged: bool) -> Result<()> {
    if kind == IdKind::Gid && !privileged {
        std::fs::write(format!("/proc/{proc}/setgroups"), "deny")
            .context("denying setgroups in the new user namespace")?;
    }
    let text = map_text(maps);
    std::fs::write(format!("/proc/{proc}/{}", kind.file()), &text).map_err(|e| {
        anyhow!(
            "writing {} {:?}: {e}{}",
            kind.file(),
            text.trim(),
            if privileged {
                ""
            } else {
                " (an unprivileged user can map only its own id)"
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn m(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(s)
            .build()
            .unwrap()
    }

    #[test]
    fn text_and_writer_choice() {
        let maps = [m(0, 1000, 1), m(1, 100000, 65536)];
        assert_eq!(map_text(&maps), "0 1000 1\n1 100000 65536\n");
        assert_eq!(choose_writer(&maps[..1], 1000, false), Writer::Direct);
        assert_eq!(choose_writer(&maps[..1], 1001, false), Writer::Helper);
        assert_eq!(choose_writer(&maps, 1000, false), Writer::Helper);
        assert_eq!(choose_writer(&maps, 0, true), Writer::Direct);
        assert_eq!(
            helper_args(7, &maps),
            ["7", "0", "1000", "1", "1", "100000", "65536"]
        );
    }
}

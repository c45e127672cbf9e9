//! Mount option strings → mount(2) flags, propagation changes and data.

use nix::mount::MsFlags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Propagation changes, applied one at a time after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options, joined with ',' for mount(2)'s data.
    pub data: Vec<String>,
    /// "rro": make the whole tree read-only (mount_setattr).
    pub recursive_ro: bool,
    /// An atime option was given, so the source's atime flags are not kept.
    pub explicit_atime: bool,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Flags that a bind mount needs a second, remounting call to apply.
    pub fn remount_flags(&self) -> MsFlags {
        self.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        recursive_ro: false,
        explicit_atime: false,
    };
    for opt in options {
        let (set, clear, atime) = match opt.as_str() {
            "defaults" | "tmpcopyup" => (MsFlags::empty(), MsFlags::empty(), false),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), false),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, false),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), false),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, false),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), false),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, false),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), false),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, false),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), false),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, false),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), false),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), false),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty(), false),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK, false),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, true),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), true),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, true),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), true),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), true),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, true),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), true),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, true),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), false),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty(), false),
            "rro" => {
                o.recursive_ro = true;
                (MsFlags::MS_RDONLY, MsFlags::empty(), false)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let base = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                let rec = if opt.starts_with('r') {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                o.propagation.push(base | rec);
                continue;
            }
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.explicit_atime |= atime;
    }
    o
}

/// Propagation named by linux.rootfsPropagation.
pub fn parse_propagation(s: &str) -> Option<MsFlags> {
    let p = parse(&[s.to_string()]);
    match p.propagation.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> MountOptions {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert!(o.explicit_atime);
        let o = p(&["rbind", "ro", "rslave"]);
        assert!(o.is_bind());
        assert!(o.flags.contains(MsFlags::MS_REC));
        assert_eq!(o.remount_flags(), MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        let o = p(&["ro", "rw", "nodev", "dev"]);
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(
            parse_propagation("rprivate"),
            Some(MsFlags::MS_PRIVATE | MsFlags::MS_REC)
        );
        assert_eq!(parse_propagation("shared"), Some(MsFlags::MS_SHARED));
        assert_eq!(parse_propagation("bogus"), None);
        assert!(p(&["rro"]).recursive_ro);
    }
}

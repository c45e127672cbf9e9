//! Which namespaces a process enters, and the one way it enters them.
//!
//! Every front door describes its namespaces as an [`NsPlan`]: `create`
//! from linux.namespaces, `exec` as the paths of the container init's
//! namespaces under /proc/<pid>/ns (as youki does), and image mode from the
//! Spec it built. The plan's handles are opened before any fork
//! ([`NsPlan::open`]), so a bad path fails with its name, and [`enter`]
//! carries them out, in the only order that works: the user namespace
//! first (it grants the rights to join or create the rest), then the other
//! joins, the mount namespace last (it changes what paths mean), then the
//! namespaces to create.

use super::channel::{Channel, Msg};
use super::idmap::{self, IdKind};
use super::userns_limits;
use anyhow::{anyhow, Context, Result};
use nix::fcntl::OFlag;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    // The enum's discriminants are the CLONE_NEW* values.
    CloneFlags::from_bits_retain(t as i32)
}

/// The name of a namespace under /proc/PID/ns.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    use LinuxNamespaceType as T;
    match t {
        T::Mount => "mnt",
        T::Cgroup => "cgroup",
        T::Uts => "uts",
        T::Ipc => "ipc",
        T::User => "user",
        T::Pid => "pid",
        T::Network => "net",
        T::Time => "time",
    }
}

/// What happens to the user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserNs {
    /// Stay in ours.
    Keep,
    /// Make a new one and map ids into it.
    Create,
    /// Join this one.
    Join(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsPlan {
    pub user: UserNs,
    /// The other namespaces to join, by path, the mount namespace last.
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// Namespaces to create, except the user namespace.
    pub create: CloneFlags,
    /// The container has a PID namespace of its own (a new one).
    pub new_pid: bool,
    pub has_cgroupns: bool,
    pub has_uts: bool,
}

impl NsPlan {
    pub fn from_spec(spec: &Spec) -> Self {
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or(&[]);
        let mut plan = NsPlan {
            user: UserNs::Keep,
            join: Vec::new(),
            create: CloneFlags::empty(),
            new_pid: false,
            has_cgroupns: false,
            has_uts: false,
        };
        for ns in list {
            let t = ns.typ();
            let path = ns.path().as_ref().filter(|p| !p.as_os_str().is_empty());
            match (t, path) {
                (LinuxNamespaceType::User, Some(p)) => plan.user = UserNs::Join(p.clone()),
                (LinuxNamespaceType::User, None) => plan.user = UserNs::Create,
                (_, Some(p)) => plan.join.push((clone_flag(t), p.clone())),
                (_, None) => plan.create |= clone_flag(t),
            }
            match t {
                LinuxNamespaceType::Cgroup => plan.has_cgroupns = true,
                LinuxNamespaceType::Uts => plan.has_uts = true,
                _ => {}
            }
        }
        plan.mount_last();
        plan.new_pid = plan.create.contains(CloneFlags::CLONE_NEWPID);
        plan
    }

    /// `exec`: every namespace `types` lists, as the container process's
    /// own under /proc/`pid`/ns, except those we already share (`same`
    /// says so by /proc name). Nothing is created.
    pub fn join_process(
        types: &[LinuxNamespaceType],
        pid: i32,
        same: impl Fn(&str) -> bool,
    ) -> Self {
        let mut plan = NsPlan {
            user: UserNs::Keep,
            join: Vec::new(),
            create: CloneFlags::empty(),
            new_pid: false,
            has_cgroupns: types.contains(&LinuxNamespaceType::Cgroup),
            has_uts: types.contains(&LinuxNamespaceType::Uts),
        };
        for &t in types {
            let name = proc_name(t);
            if same(name) {
                continue;
            }
            let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
            match t {
                LinuxNamespaceType::User => plan.user = UserNs::Join(path),
                _ => plan.join.push((clone_flag(t), path)),
            }
        }
        plan.mount_last();
        plan
    }

    fn mount_last(&mut self) {
        // A stable sort keeps the listed order of the others.
        self.join
            .sort_by_key(|(f, _)| *f == CloneFlags::CLONE_NEWNS);
    }

    /// The container has a mount namespace of its own (new or joined).
    pub fn has_mount_ns(&self) -> bool {
        self.create.contains(CloneFlags::CLONE_NEWNS)
            || self.join.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWNS)
    }

    /// The container runs in a user namespace (new or joined).
    pub fn in_userns(&self) -> bool {
        self.user != UserNs::Keep
    }

    /// Opens every namespace to join, before forking, so a bad path fails
    /// with its name.
    pub fn open(&self) -> Result<OpenedNs> {
        let user = match &self.user {
            UserNs::Join(p) => Some(open_ns(p)?),
            _ => None,
        };
        let join = self
            .join
            .iter()
            .map(|(flag, path)| Ok((*flag, open_ns(path)?)))
            .collect::<Result<_>>()?;
        Ok(OpenedNs {
            user,
            create_user: self.user == UserNs::Create,
            join,
            create: self.create,
        })
    }
}

fn open_ns(path: &std::path::Path) -> Result<OwnedFd> {
    crate::sys::open(path, OFlag::O_RDONLY, Mode::empty())
        .map_err(|e| anyhow!("linux.namespaces: {}: {e}", path.display()))
}

/// A plan whose namespaces to join are open handles: what [`enter`] takes.
pub struct OpenedNs {
    user: Option<OwnedFd>,
    create_user: bool,
    join: Vec<(CloneFlags, OwnedFd)>,
    create: CloneFlags,
}

impl OpenedNs {
    /// The user namespace (when there is one) and the mount namespace of a
    /// container another rank built: what a rank joining a node's
    /// container enters.
    pub fn built_container(user: Option<OwnedFd>, mnt: OwnedFd) -> Self {
        OpenedNs {
            user,
            create_user: false,
            join: vec![(CloneFlags::CLONE_NEWNS, mnt)],
            create: CloneFlags::empty(),
        }
    }
}

/// Who writes the id maps of a new user namespace.
pub enum IdMaps<'a> {
    /// The parent process (`create`): it may hold privileges we lack, and
    /// may need newuidmap for a multi-range map.
    Parent(&'a Channel),
    /// We map ourselves (image mode): the single line an unprivileged
    /// process may write for its own uid and gid.
    Own {
        uids: &'a [LinuxIdMapping],
        gids: &'a [LinuxIdMapping],
    },
}

/// Enters the namespaces of `ns`: the one way in, for `create`, `exec`,
/// image mode and the ranks that join a node's container.
pub fn enter(ns: OpenedNs, maps: IdMaps) -> Result<()> {
    if let Some(user) = &ns.user {
        setns(user, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| anyhow!("joining the user namespace: {e}"))?;
        become_userns_root();
    } else if ns.create_user {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| {
            anyhow!(userns_limits::explain(
                "creating a user namespace",
                e,
                &userns_limits::Knobs::read()
            ))
        })?;
        match maps {
            IdMaps::Parent(ch) => {
                ch.send(&Msg::WriteIdMaps)?;
                ch.expect(Msg::Proceed)?;
                become_userns_root();
            }
            // We mapped our own ids, and stay who we are.
            IdMaps::Own { uids, gids } => idmap::write_own_map(IdKind::Uid, uids)
                .and_then(|()| idmap::write_own_map(IdKind::Gid, gids))
                .map_err(userns_limits::with_hint)?,
        }
    }
    let mut joined_mount = false;
    for (flag, fd) in &ns.join {
        setns(fd, *flag).map_err(|e| anyhow!("joining the {} namespace: {e}", flag_name(*flag)))?;
        joined_mount |= *flag == CloneFlags::CLONE_NEWNS;
    }
    if joined_mount {
        // Our cwd still names a directory of the mount namespace we left.
        nix::unistd::chdir("/").context("chdir / in the joined mount namespace")?;
    }
    if !ns.create.is_empty() {
        unshare(ns.create).map_err(|e| anyhow!("creating namespaces {:?}: {e}", ns.create))?;
    }
    Ok(())
}

fn flag_name(f: CloneFlags) -> &'static str {
    [
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWNET, "network"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        (CloneFlags::from_bits_retain(libc::CLONE_NEWTIME), "time"),
    ]
    .iter()
    .find(|(flag, _)| *flag == f)
    .map_or("unknown", |(_, name)| name)
}

/// Inside a fresh user namespace our ids may be unmapped; files we create
/// while building the rootfs must belong to the namespace's root, as in runc.
fn become_userns_root() {
    let zero_g = nix::unistd::Gid::from_raw(0);
    let zero_u = nix::unistd::Uid::from_raw(0);
    // Fails (EINVAL) only when 0 is not mapped; then we keep our ids.
    let _ = nix::unistd::setresgid(zero_g, zero_g, zero_g);
    let _ = nix::unistd::setresuid(zero_u, zero_u, zero_u);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.0",
            "linux": {"namespaces": namespaces}
        }))
        .unwrap()
    }

    #[test]
    fn a_bundle_joins_user_first_and_mount_last_and_creates_the_rest() {
        let p = NsPlan::from_spec(&spec(serde_json::json!([
            {"type": "mount", "path": "/proc/1/ns/mnt"}, {"type": "pid"},
            {"type": "network", "path": "/proc/1/ns/net"},
            {"type": "user", "path": "/proc/1/ns/user"},
            {"type": "uts"}, {"type": "ipc", "path": "/proc/1/ns/ipc"}, {"type": "cgroup"}
        ])));
        assert_eq!(p.user, UserNs::Join("/proc/1/ns/user".into()));
        let order: Vec<CloneFlags> = p.join.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            order,
            [
                CloneFlags::CLONE_NEWNET,
                CloneFlags::CLONE_NEWIPC,
                CloneFlags::CLONE_NEWNS
            ]
        );
        assert_eq!(
            p.create,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWCGROUP
        );
        assert!(p.in_userns() && p.new_pid && p.has_cgroupns && p.has_uts && p.has_mount_ns());
    }

    #[test]
    fn a_new_user_namespace_is_created_not_joined() {
        let p = NsPlan::from_spec(&spec(
            serde_json::json!([{"type": "user"}, {"type": "mount"}]),
        ));
        assert_eq!(p.user, UserNs::Create);
        assert!(p.join.is_empty() && p.create == CloneFlags::CLONE_NEWNS && !p.new_pid);
        assert!(p.has_mount_ns());
        // No namespaces at all: every one is the caller's.
        let none = NsPlan::from_spec(&spec(serde_json::json!([])));
        assert!(!none.has_mount_ns() && !none.in_userns() && none.create.is_empty());
    }

    #[test]
    fn exec_joins_the_inits_namespaces_by_proc_path_except_shared_ones() {
        use LinuxNamespaceType as T;
        let types = [T::Mount, T::Pid, T::Network, T::User, T::Uts];
        // We share the network namespace (the container has the host's).
        let p = NsPlan::join_process(&types, 42, |name| name == "net");
        assert_eq!(p.user, UserNs::Join("/proc/42/ns/user".into()));
        let joins: Vec<(CloneFlags, String)> = p
            .join
            .iter()
            .map(|(f, path)| (*f, path.display().to_string()))
            .collect();
        assert_eq!(
            joins,
            [
                (CloneFlags::CLONE_NEWPID, "/proc/42/ns/pid".to_string()),
                (CloneFlags::CLONE_NEWUTS, "/proc/42/ns/uts".to_string()),
                (CloneFlags::CLONE_NEWNS, "/proc/42/ns/mnt".to_string()),
            ]
        );
        assert!(p.create.is_empty() && !p.new_pid && p.has_uts);
    }

    #[test]
    fn every_namespace_type_has_a_proc_name_and_a_flag_name() {
        use LinuxNamespaceType as T;
        for t in [
            T::Mount,
            T::Cgroup,
            T::Uts,
            T::Ipc,
            T::User,
            T::Pid,
            T::Network,
            T::Time,
        ] {
            assert!(!proc_name(t).is_empty());
            if t != T::User {
                assert_ne!(flag_name(clone_flag(t)), "unknown", "{t:?}");
            }
        }
    }
}

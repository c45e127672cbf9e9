//! Why a user namespace could not be made, in one line that names the
//! host's setting and what an admin can change. Hosts forbid unprivileged
//! user namespaces in three common ways: Debian (up to 10) with
//! kernel.unprivileged_userns_clone = 0, RHEL 7 and hardened sites with
//! user.max_user_namespaces = 0, and Ubuntu 24.04 with AppArmor's
//! kernel.apparmor_restrict_unprivileged_userns = 1 (there the namespace is
//! made, but without the capabilities to map ids or mount in it).

use nix::errno::Errno;

/// The settings, as read from /proc/sys (None where the kernel has none).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Knobs {
    pub unprivileged_userns_clone: Option<String>,
    pub max_user_namespaces: Option<String>,
    pub apparmor_restrict: Option<String>,
}

impl Knobs {
    pub fn read() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        Knobs {
            unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
            max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
            apparmor_restrict: read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        }
    }
}

/// Ubuntu's AppArmor restriction is on: unshare works, what follows fails.
pub fn apparmor_restricts(k: &Knobs) -> bool {
    k.apparmor_restrict.as_deref() == Some("1")
}

const APPARMOR_FIX: &str = "AppArmor restricts unprivileged user namespaces on this host \
(kernel.apparmor_restrict_unprivileged_userns = 1, as Ubuntu 24.04 ships it); an admin can \
load the AppArmor profile that comes with hpcc (integration/apparmor/hpcc, see the README), \
or allow them for everyone with `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`";

/// The message for a failure `e` while making or using a new user
/// namespace (`step` says what failed).
pub fn explain(step: &str, e: Errno, k: &Knobs) -> String {
    if k.unprivileged_userns_clone.as_deref() == Some("0") {
        return format!(
            "{step}: {e}: unprivileged user namespaces are disabled on this host \
             (kernel.unprivileged_userns_clone = 0); an admin can allow them with \
             `sysctl -w kernel.unprivileged_userns_clone=1`"
        );
    }
    match k.max_user_namespaces.as_deref() {
        Some("0") => {
            return format!(
                "{step}: {e}: this host allows no user namespaces (user.max_user_namespaces = 0); \
                 an admin can allow them with `sysctl -w user.max_user_namespaces=15000`"
            )
        }
        Some(n) if e == Errno::ENOSPC => {
            return format!(
                "{step}: {e}: the host's limit of {n} user namespaces (user.max_user_namespaces) \
                 is reached; an admin can raise it with `sysctl -w user.max_user_namespaces=...`"
            )
        }
        _ => {}
    }
    if apparmor_restricts(k) {
        return format!("{step}: {e}: {APPARMOR_FIX}");
    }
    format!("{step}: {e} (are unprivileged user namespaces enabled on this host?)")
}

/// A hint to add to a later failure (a mount refused with EPERM) in a user
/// namespace we made, when AppArmor's restriction explains it.
pub fn later_hint(k: &Knobs) -> Option<&'static str> {
    apparmor_restricts(k).then_some(APPARMOR_FIX)
}

/// `e`, with the AppArmor hint added when the host's restriction is on.
pub fn with_hint(e: anyhow::Error) -> anyhow::Error {
    match later_hint(&Knobs::read()) {
        Some(h) => anyhow::anyhow!("{e:#}: {h}"),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs(clone: Option<&str>, max: Option<&str>, aa: Option<&str>) -> Knobs {
        Knobs {
            unprivileged_userns_clone: clone.map(String::from),
            max_user_namespaces: max.map(String::from),
            apparmor_restrict: aa.map(String::from),
        }
    }

    #[test]
    fn each_host_setting_is_named_with_its_fix() {
        let step = "creating a user namespace";
        let debian = explain(step, Errno::EPERM, &knobs(Some("0"), Some("63000"), None));
        assert!(
            debian.contains("kernel.unprivileged_userns_clone = 0")
                && debian.contains("sysctl -w kernel.unprivileged_userns_clone=1"),
            "{debian}"
        );
        let rhel = explain(step, Errno::ENOSPC, &knobs(None, Some("0"), None));
        assert!(
            rhel.contains("user.max_user_namespaces = 0")
                && rhel.contains("sysctl -w user.max_user_namespaces=15000"),
            "{rhel}"
        );
        let full = explain(step, Errno::ENOSPC, &knobs(None, Some("10"), None));
        assert!(full.contains("limit of 10 user namespaces"), "{full}");
        let ubuntu = explain(
            "writing uid_map",
            Errno::EPERM,
            &knobs(None, Some("63000"), Some("1")),
        );
        assert!(
            ubuntu.contains("apparmor_restrict_unprivileged_userns = 1")
                && ubuntu.contains("integration/apparmor/hpcc"),
            "{ubuntu}"
        );
        assert!(later_hint(&knobs(None, None, Some("1"))).is_some());
        assert!(later_hint(&knobs(None, None, Some("0"))).is_none());
        let plain = explain(
            step,
            Errno::EPERM,
            &knobs(Some("1"), Some("63000"), Some("0")),
        );
        assert!(plain.ends_with("(are unprivileged user namespaces enabled on this host?)"));
        // One line, whatever the case.
        for m in [debian, rhel, full, ubuntu, plain] {
            assert!(!m.contains('\n'), "{m}");
            assert!(
                m.starts_with(step) || m.starts_with("writing uid_map"),
                "{m}"
            );
        }
    }
}

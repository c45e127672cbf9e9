//! When the seccomp filter loads, relative to the capability drops, the
//! user switch and no_new_privs, decided as plain data so the order can be
//! read and tested on its own; `launch::process_setup` carries it out.
//!
//! The rules:
//! - Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, so the
//!   filter goes in before the capabilities are dropped.
//! - With no_new_privs, the filter waits until just before execve, so that
//!   nothing hpcc does first (waiting for `start`, hooks) is filtered.
//! - Nothing after the filter may need a syscall a profile could deny
//!   that hpcc can do earlier: the fds are marked close-on-exec before it
//!   (close_range is missing from many allow-lists written for runc), and
//!   the cwd is entered and checked as root before it (a profile may deny
//!   getcwd); only a cwd that root may not enter waits for the user
//!   switch. What must come after (the user switch, capabilities, waiting
//!   for `start`) uses calls every runc-compatible profile allows, as in
//!   runc.
//! - no_new_privs is set only when the config asks for it; the filter
//!   itself never sets it (see `load`).
//! - The bounding set is dropped while we are still privileged; the user
//!   switch keeps the permitted set (PR_SET_KEEPCAPS) so the configured
//!   sets can be applied after it.
//! - An unprivileged uid under no_new_privs with no capabilities asked for
//!   loses them all at execve and can never regain one, so nothing is
//!   dropped by hand.

/// One step of a process's setup, in the order it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Rlimits,
    SessionKeyring,
    LoadSeccomp,
    DropBounding,
    KeepCaps,
    SwitchUser,
    KeepCapsOff,
    SetCapabilities,
    NoNewPrivs,
    /// chdir as root, before any filter; a no-op for [`Step::EnterCwd`]
    /// when it succeeds.
    EnterCwdAsRoot,
    /// chdir as the container user, when root could not.
    EnterCwd,
    FindProgram,
    MarkFdsCloexec,
    ResetSignals,
    ExecLabels,
}

/// What the order depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub no_new_privs: bool,
    /// The uid the process runs as.
    pub uid: u32,
    /// No capability is configured in any set.
    pub no_capabilities: bool,
    pub has_seccomp: bool,
    pub new_session_keyring: bool,
}

/// The steps before the program is found and ready (`prepare`), and those
/// that run right before execve (`at_exec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub prepare: Vec<Step>,
    pub at_exec: Vec<Step>,
}

pub fn order(f: Facts) -> Order {
    use Step::*;
    let mut prepare = vec![Rlimits];
    if f.new_session_keyring {
        prepare.push(SessionKeyring);
    }
    prepare.extend([MarkFdsCloexec, EnterCwdAsRoot]);
    if f.has_seccomp && !f.no_new_privs {
        prepare.push(LoadSeccomp);
    }
    let exec_drops_all = f.uid != 0 && f.no_new_privs && f.no_capabilities;
    if exec_drops_all {
        prepare.push(SwitchUser);
    } else {
        prepare.extend([
            DropBounding,
            KeepCaps,
            SwitchUser,
            KeepCapsOff,
            SetCapabilities,
        ]);
    }
    if f.no_new_privs {
        prepare.push(NoNewPrivs);
    }
    prepare.extend([EnterCwd, FindProgram, ResetSignals, ExecLabels]);
    let at_exec = if f.has_seccomp && f.no_new_privs {
        vec![LoadSeccomp]
    } else {
        Vec::new()
    };
    Order { prepare, at_exec }
}

#[cfg(test)]
mod tests {
    use super::Step::*;
    use super::*;

    fn facts() -> Facts {
        Facts {
            no_new_privs: false,
            uid: 0,
            no_capabilities: false,
            has_seccomp: true,
            new_session_keyring: true,
        }
    }

    fn pos(v: &[Step], s: Step) -> usize {
        v.iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("{s:?} missing from {v:?}"))
    }

    #[test]
    fn without_no_new_privs_the_filter_loads_while_cap_sys_admin_is_held() {
        let o = order(facts());
        let p = &o.prepare;
        assert!(pos(p, LoadSeccomp) < pos(p, DropBounding));
        assert!(pos(p, LoadSeccomp) < pos(p, SwitchUser));
        assert!(!p.contains(&NoNewPrivs), "no_new_privs only when asked for");
        assert!(o.at_exec.is_empty());
    }

    #[test]
    fn fds_are_marked_and_the_cwd_entered_before_any_filter_loads() {
        for no_new_privs in [false, true] {
            let o = order(Facts {
                no_new_privs,
                ..facts()
            });
            let p = &o.prepare;
            assert!(pos(p, EnterCwdAsRoot) < pos(p, EnterCwd), "{p:?}");
            assert!(pos(p, EnterCwdAsRoot) < pos(p, SwitchUser), "{p:?}");
            if let Some(load) = p.iter().position(|s| *s == LoadSeccomp) {
                assert!(pos(p, MarkFdsCloexec) < load, "{p:?}");
                assert!(pos(p, EnterCwdAsRoot) < load, "{p:?}");
            } else {
                assert_eq!(o.at_exec, [LoadSeccomp]);
            }
        }
    }

    #[test]
    fn with_no_new_privs_the_filter_waits_for_execve() {
        let o = order(Facts {
            no_new_privs: true,
            ..facts()
        });
        assert!(!o.prepare.contains(&LoadSeccomp));
        assert_eq!(o.at_exec, [LoadSeccomp]);
        let p = &o.prepare;
        assert!(pos(p, SetCapabilities) < pos(p, NoNewPrivs));
    }

    #[test]
    fn capabilities_are_set_after_the_user_switch_that_keeps_them() {
        let p = order(facts()).prepare;
        assert!(pos(p.as_slice(), DropBounding) < pos(&p, KeepCaps));
        assert!(pos(&p, KeepCaps) < pos(&p, SwitchUser));
        assert!(pos(&p, SwitchUser) < pos(&p, KeepCapsOff));
        assert!(pos(&p, KeepCapsOff) < pos(&p, SetCapabilities));
    }

    #[test]
    fn an_unprivileged_no_new_privs_process_with_no_capabilities_drops_nothing_by_hand() {
        let o = order(Facts {
            no_new_privs: true,
            uid: 1000,
            no_capabilities: true,
            has_seccomp: false,
            new_session_keyring: false,
        });
        assert_eq!(
            o.prepare,
            [
                Rlimits,
                MarkFdsCloexec,
                EnterCwdAsRoot,
                SwitchUser,
                NoNewPrivs,
                EnterCwd,
                FindProgram,
                ResetSignals,
                ExecLabels
            ]
        );
        assert!(o.at_exec.is_empty(), "no filter, nothing at exec");
        // Root, or asked-for capabilities, keep the full drop.
        for f in [
            Facts { uid: 0, ..facts() },
            Facts {
                no_new_privs: true,
                uid: 1000,
                no_capabilities: false,
                ..facts()
            },
        ] {
            assert!(order(f).prepare.contains(&DropBounding), "{f:?}");
        }
    }
}

//! linux.seccomp → BPF, with seccompiler (pure Rust, so the binary stays
//! static). seccompiler gives one match action per filter, so a profile
//! becomes a stack of filters whose combined verdict the kernel takes as
//! the most severe one:
//!
//! - a base filter that allows every syscall the profile lists (under the
//!   same argument conditions) and applies defaultAction to the rest;
//! - one filter per non-allow action (ERRNO(n), KILL, TRAP, ...) that
//!   applies it to that action's syscalls and allows the rest;
//! - on x86_64, a guard that refuses x32-ABI syscall numbers, which would
//!   otherwise miss every rule. Foreign architectures are killed by
//!   seccompiler's own architecture check.

pub mod load_order;
mod table;

use anyhow::{anyhow, bail, Result};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

type Table = &'static [(&'static str, i64)];

/// The BPF architecture and syscall table for `arch` (a Rust target arch
/// name). hpcc carries tables for x86_64 and aarch64 only; anywhere else
/// a profile is refused, rather than compiled against the wrong numbers.
fn table_for(arch: &str) -> Result<(TargetArch, Table)> {
    match arch {
        "x86_64" => Ok((TargetArch::x86_64, table::X86_64)),
        "aarch64" => Ok((TargetArch::aarch64, table::AARCH64)),
        other => bail!(
            "linux.seccomp: hpcc has no syscall table for the {other} architecture (only x86_64 and aarch64)"
        ),
    }
}

fn syscall_nr(table: Table, name: &str) -> Option<i64> {
    table.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

const EPERM: u32 = 1;

/// The seccompiler action for an OCI action; NOTIFY needs a listener
/// hpcc does not offer, and says so.
fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActAllow => SeccompAction::Allow,
        A::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(EPERM)),
        A::ScmpActKill | A::ScmpActKillThread => SeccompAction::KillThread,
        A::ScmpActKillProcess => SeccompAction::KillProcess,
        A::ScmpActTrap => SeccompAction::Trap,
        A::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(EPERM)),
        A::ScmpActLog => SeccompAction::Log,
        A::ScmpActNotify => {
            bail!("linux.seccomp: SCMP_ACT_NOTIFY needs a seccomp agent, which hpcc does not run")
        }
    })
}

fn condition(a: &oci_spec::runtime::LinuxSeccompArg) -> Result<SeccompCondition> {
    use LinuxSeccompOperator as O;
    let (op, value) = match a.op() {
        O::ScmpCmpNe => (SeccompCmpOp::Ne, a.value()),
        O::ScmpCmpLt => (SeccompCmpOp::Lt, a.value()),
        O::ScmpCmpLe => (SeccompCmpOp::Le, a.value()),
        O::ScmpCmpEq => (SeccompCmpOp::Eq, a.value()),
        O::ScmpCmpGe => (SeccompCmpOp::Ge, a.value()),
        O::ScmpCmpGt => (SeccompCmpOp::Gt, a.value()),
        // libseccomp: (arg & value) == valueTwo
        O::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    let index = u8::try_from(a.index()).map_err(|_| {
        anyhow!(
            "linux.seccomp: argument index {} is out of range",
            a.index()
        )
    })?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| anyhow!("linux.seccomp: argument {index}: {e}"))
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn add(rules: &mut Rules, nr: i64, conds: &[SeccompCondition]) -> Result<()> {
    let entry = rules.entry(nr).or_default();
    if !conds.is_empty() {
        entry.push(SeccompRule::new(conds.to_vec()).map_err(|e| anyhow!("linux.seccomp: {e}"))?);
    } else {
        // An unconditional rule: seccompiler matches a syscall with no rules.
        entry.clear();
    }
    Ok(())
}

/// Compiles the profile to the filters to load, in order.
pub fn compile(s: &LinuxSeccomp) -> Result<Vec<BpfProgram>> {
    compile_for(s, std::env::consts::ARCH)
}

fn compile_for(s: &LinuxSeccomp, arch: &str) -> Result<Vec<BpfProgram>> {
    let (target, table) = table_for(arch)?;
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut listed: Rules = BTreeMap::new();
    let mut listed_unconditional = std::collections::BTreeSet::new();
    let mut by_action: Vec<(SeccompAction, Rules, std::collections::BTreeSet<i64>)> = Vec::new();
    for sc in s.syscalls().as_deref().unwrap_or(&[]) {
        let act = action(sc.action(), sc.errno_ret())?;
        let conds = sc
            .args()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(condition)
            .collect::<Result<Vec<_>>>()?;
        for name in sc.names() {
            let Some(nr) = syscall_nr(table, name) else {
                crate::debug!("linux.seccomp: skipping {name}, unknown on this architecture");
                continue;
            };
            if !listed_unconditional.contains(&nr) {
                add(&mut listed, nr, &conds)?;
                if conds.is_empty() {
                    listed_unconditional.insert(nr);
                }
            }
            if act == SeccompAction::Allow || act == default {
                continue;
            }
            let pos = match by_action.iter().position(|(a, _, _)| *a == act) {
                Some(p) => p,
                None => {
                    by_action.push((act.clone(), BTreeMap::new(), Default::default()));
                    by_action.len() - 1
                }
            };
            let (_, rules, uncond) = &mut by_action[pos];
            if !uncond.contains(&nr) {
                add(rules, nr, &conds)?;
                if conds.is_empty() {
                    uncond.insert(nr);
                }
            }
        }
    }
    let mut programs = Vec::new();
    if target == TargetArch::x86_64 {
        programs.push(x32_guard(&default));
    }
    // With an allow-by-default profile the base filter would allow all.
    if default != SeccompAction::Allow {
        let base = SeccompFilter::new(listed, default.clone(), SeccompAction::Allow, target)
            .map_err(|e| anyhow!("linux.seccomp: {e}"))?;
        programs.push(BpfProgram::try_from(base).map_err(|e| anyhow!("linux.seccomp: {e}"))?);
    }
    for (act, rules, _) in by_action {
        let f = SeccompFilter::new(rules, SeccompAction::Allow, act, target)
            .map_err(|e| anyhow!("linux.seccomp: {e}"))?;
        programs.push(BpfProgram::try_from(f).map_err(|e| anyhow!("linux.seccomp: {e}"))?);
    }
    Ok(programs)
}

/// x86_64 only: a syscall number with the x32 bit (0x40000000) set gets
/// the profile's default action if that is a denial, else ENOSYS-like EPERM
/// is not forced: an allow-by-default profile still must not let x32
/// numbers dodge its deny rules, so they are refused with EPERM.
fn x32_guard(default: &SeccompAction) -> BpfProgram {
    use seccompiler::sock_filter;
    let deny: u32 = match default {
        SeccompAction::Allow | SeccompAction::Log | SeccompAction::Trace(_) => {
            u32::from(SeccompAction::Errno(EPERM))
        }
        other => u32::from(other.clone()),
    };
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    vec![
        sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        }, // seccomp_data.nr
        sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: 0x4000_0000,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: deny,
        },
        sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }, // SECCOMP_RET_ALLOW
    ]
}

/// Loads the filters into this process: the last one loaded runs first,
/// all are consulted. no_new_privs is left as the config set it; without
/// it the kernel wants CAP_SYS_ADMIN, which load_order arranges.
pub fn load(programs: &[BpfProgram]) -> Result<()> {
    for p in programs {
        let insns: Vec<libc::sock_filter> = p
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        crate::sys::install_seccomp_filter(&insns).map_err(|e| match e {
            nix::errno::Errno::EACCES => anyhow!(
                "loading the seccomp filter: {e}: without process.noNewPrivileges the process needs CAP_SYS_ADMIN"
            ),
            e => anyhow!("loading the seccomp filter: {e}"),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    /// Runs `f` in a forked child that loads `s`, and returns f's result
    /// (or -signal when the child was killed).
    fn in_child(s: &LinuxSeccomp, f: fn() -> i32) -> i32 {
        let programs = compile(s).unwrap();
        // SAFETY: the child makes only raw syscalls (prctl, seccomp, the
        // probe's syscall) and then _exit: nothing that allocates or locks.
        match unsafe { crate::sys::fork_in_threaded_test() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let _ = nix::sys::prctl::set_no_new_privs();
                if load(&programs).is_err() {
                    crate::sys::exit_child(200);
                }
                crate::sys::exit_child(f())
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, c) => c,
                    nix::sys::wait::WaitStatus::Signaled(_, sig, _) => -(sig as i32),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    fn getppid_errno() -> i32 {
        // SAFETY: a raw syscall with no arguments.
        let r = unsafe { libc::syscall(libc::SYS_getppid) };
        if r < 0 {
            nix::errno::Errno::last_raw()
        } else {
            0
        }
    }

    fn personality_probe() -> i32 {
        // SAFETY: personality(0xffffffff) only queries.
        let r = unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
        if r < 0 {
            nix::errno::Errno::last_raw()
        } else {
            0
        }
    }

    #[test]
    fn verdicts_follow_the_profile() {
        // Deny-list: getppid gets ERRNO(EACCES), the rest is allowed.
        let deny = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        }));
        assert_eq!(in_child(&deny, getppid_errno), 13);
        assert_eq!(in_child(&deny, personality_probe), 0);
        // Allow-list with an argument condition: personality only with
        // arg0 == 0; the query form falls to the default ERRNO(EPERM).
        let allow = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["exit", "exit_group", "getppid", "rt_sigreturn", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}
            ]
        }));
        assert_eq!(in_child(&allow, getppid_errno), 0);
        assert_eq!(in_child(&allow, personality_probe), 1);
        // KILL_PROCESS ends the child with SIGSYS.
        let kill = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
        }));
        assert_eq!(in_child(&kill, getppid_errno), -(libc::SIGSYS));
    }

    #[test]
    fn x32_numbers_do_not_dodge_a_deny_rule() {
        if !cfg!(target_arch = "x86_64") {
            return;
        }
        fn x32_getppid() -> i32 {
            // SAFETY: a raw syscall number with the x32 bit set.
            let r = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getppid) };
            if r < 0 {
                nix::errno::Errno::last_raw()
            } else {
                0
            }
        }
        let deny = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert_ne!(
            in_child(&deny, x32_getppid),
            0,
            "an x32 getppid must not succeed"
        );
    }

    #[test]
    fn notify_and_unknown_names() {
        let n = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(compile(&n).unwrap_err().to_string().contains("NOTIFY"));
        let u = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["no_such_syscall_hpcc"], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert!(
            compile(&u).is_ok(),
            "unknown names are skipped, as runc does"
        );
    }

    #[test]
    fn only_architectures_with_a_table_compile() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
        }));
        // x86_64 adds the x32 guard in front of the base filter.
        assert_eq!(compile_for(&p, "x86_64").unwrap().len(), 2);
        assert_eq!(compile_for(&p, "aarch64").unwrap().len(), 1);
        // The two tables number syscalls differently: read is 0 on x86_64.
        assert_eq!(syscall_nr(table::X86_64, "read"), Some(0));
        assert_eq!(syscall_nr(table::AARCH64, "read"), Some(63));
        for other in ["riscv64", "powerpc64", "s390x"] {
            let e = compile_for(&p, other).unwrap_err().to_string();
            assert!(e.contains(other) && e.contains("no syscall table"), "{e}");
        }
    }
}

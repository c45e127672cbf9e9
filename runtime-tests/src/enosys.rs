//! Running the suites as on an older kernel: with `HPCC_TEST_ENOSYS` set
//! to a list of syscall names (`openat2,mount_setattr,close_range`), the
//! test process loads a seccomp filter that fails exactly those with
//! ENOSYS, on all its threads (TSYNC). Every process a test starts
//! inherits it, hpcc included, so hpcc sees what a kernel without them
//! answers, the way runc tests its openat2 fallback. Only root can do
//! this without no_new_privs (which would break setuid helpers), so
//! `make test` runs these passes as root.

use std::sync::Once;

/// The syscalls a test can take away, by name.
fn number(name: &str) -> Option<libc::c_long> {
    Some(match name {
        "openat2" => libc::SYS_openat2,
        "mount_setattr" => libc::SYS_mount_setattr,
        "close_range" => libc::SYS_close_range,
        "clone3" => libc::SYS_clone3,
        "pidfd_open" => libc::SYS_pidfd_open,
        "open_tree" => libc::SYS_open_tree,
        "move_mount" => libc::SYS_move_mount,
        "fsopen" => libc::SYS_fsopen,
        _ => return None,
    })
}

/// The syscalls taken away in this run, from `HPCC_TEST_ENOSYS`.
pub fn injected() -> Vec<String> {
    std::env::var("HPCC_TEST_ENOSYS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

static LOADED: Once = Once::new();

/// Loads the filter once per test process, if `HPCC_TEST_ENOSYS` asks.
///
/// # Panics
/// On an unknown name, when not root, or when the kernel refuses it.
pub fn load_from_env() {
    LOADED.call_once(|| {
        let names = injected();
        if names.is_empty() {
            return;
        }
        assert!(
            crate::is_root(),
            "HPCC_TEST_ENOSYS needs root (a user would need no_new_privs, which breaks setuid helpers)"
        );
        let nrs: Vec<libc::c_long> = names
            .iter()
            .map(|n| number(n).unwrap_or_else(|| panic!("HPCC_TEST_ENOSYS: unknown syscall {n:?}")))
            .collect();
        if let Err(e) = load(&nrs) {
            panic!("HPCC_TEST_ENOSYS: loading the seccomp filter: {e}");
        }
        note!("runtime-tests: {} fail with ENOSYS in this run", names.join(", "));
    });
}

fn load(nrs: &[libc::c_long]) -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // seccomp_data: nr at offset 0; one comparison per syscall.
    let mut prog = vec![insn(LD_W_ABS, 0, 0, 0)];
    for &nr in nrs {
        prog.push(insn(JEQ_K, 0, 1, nr as u32));
        prog.push(insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }
    prog.push(insn(RET_K, 0, 0, SECCOMP_RET_ALLOW));
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel
    // copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

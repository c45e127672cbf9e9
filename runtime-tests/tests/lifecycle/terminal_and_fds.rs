//! What reaches the container from its caller: the pty master through
//! `--console-socket`, and socket-activation fds with LISTEN_FDS.

use std::fs;
use std::time::Instant;

use runtime_tests::{sh, TestEnv, WAIT_LIMIT};

/// Receives one fd sent with SCM_RIGHTS on `sock` (what conmon and
/// go-runc do with --console-socket).
fn recv_one_fd(sock: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cbuf = [0u8; 64];
    // SAFETY: msghdr is plain data; the pointers below outlive recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len() as _;
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled the control buffer; CMSG_FIRSTHDR/DATA walk it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(
            !cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS,
            "no SCM_RIGHTS message"
        );
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32);
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn console_socket_receives_the_pty_master() {
    let env = TestEnv::new("console");
    let mut bundle = env.bundle(&sh("tty; echo out-through-the-pty"));
    bundle.edit(|c| c["process"]["terminal"] = serde_json::json!(true));
    let sock_path = env.path("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).expect("bind console socket");
    let id = env.id("console");
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        recv_one_fd(&conn)
    });
    env.hpcc(&[
        "create",
        "--bundle",
        bundle.path(),
        "--console-socket",
        sock_path.to_str().expect("path"),
        &id,
    ])
    .ok();
    let master = accept.join().expect("console thread");
    env.hpcc(&["start", &id]).ok();
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master);
    // Read until the slave side closes (EIO) or the text has arrived.
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline
        && !String::from_utf8_lossy(&out).contains("out-through-the-pty")
    {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("/dev/pts/0"),
        "the program's stdin is the pty: {text}"
    );
    assert!(text.contains("out-through-the-pty"), "{text}");
    env.wait_status(&id, "stopped");
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn socket_activation_fds_reach_the_container() {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new("listenfds");
    let bundle = env.bundle(&sh(
        "echo $LISTEN_FDS $LISTEN_PID; readlink /proc/self/fd/3",
    ));
    let marker = env.path("activated");
    fs::write(&marker, "").expect("marker");
    let file = fs::File::open(&marker).expect("open marker");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    let id = env.id("listenfds");
    let out = env.hpcc_with(&["run", "--bundle", bundle.path(), &id], |cmd| {
        cmd.env("LISTEN_FDS", "1");
        // SAFETY: dup2/close between fork and exec, on fds this test owns.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself keeps close-on-exec: clear it explicitly.
                if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for fd in 4..1024 {
                    libc::close(fd);
                }
                Ok(())
            });
        }
    });
    assert!(out.status.success(), "{out}");
    let stdout = &out.stdout;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("1 1"), "{stdout}");
    assert!(
        lines.get(1).is_some_and(|l| l.ends_with("activated")),
        "fd 3 reached the container: {stdout}"
    );
    env.assert_clean(&id, None, &bundle);
}

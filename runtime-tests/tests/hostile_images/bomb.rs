//! A resource bomb: a 2 GiB gzip bomb unpacks in constant memory.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use runtime_tests::{stderr, stdout};

use crate::checks::{sane, tool_missing};
use crate::env::Env;
use crate::imagefix::{self, Blob};

/// Writes through to `inner` and hashes what passes.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A gzip layer holding one file of `size` zero bytes, built as a stream.
fn zero_bomb(name: &str, size: u64) -> Blob {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut w = HashingWriter {
        inner: gz,
        hasher: <sha2::Sha256 as sha2::Digest>::new(),
    };
    {
        let mut b = tar::Builder::new(&mut w);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, std::io::repeat(0).take(size))
            .unwrap();
        b.finish().unwrap();
    }
    let diff = sha2::Digest::finalize(w.hasher);
    Blob {
        data: w.inner.finish().unwrap(),
        diff_id: format!("sha256:{}", imagefix::hex(&diff)),
    }
}

/// Free bytes on the filesystem holding `p`.
fn free_bytes(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a zeroed statvfs is a valid out-parameter; c is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs {}", p.display());
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Runs a command to its end and returns its output, its peak RSS in KiB
/// (wait4's rusage of that child alone, so other tests' children do not
/// count; but see the caller about what a fork inherits) and how long it
/// took.
fn run_measured(mut cmd: Command) -> (Output, u64, std::time::Duration) {
    let t0 = std::time::Instant::now();
    // Reaped by the wait4 below, which also gives its rusage.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child by pid; both pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let took = t0.elapsed();
    let o = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    };
    (o, ru.ru_maxrss as u64, took)
}

#[test]
fn a_2_gib_gzip_bomb_unpacks_in_constant_memory() {
    const SIZE: u64 = 2 << 30;
    let env = Env::new("bomb");
    let free = free_bytes(&env.dir);
    if free < SIZE + (1 << 30) {
        runtime_tests::skip(&format!(
            "the gzip bomb needs 3 GiB free at {}, there are {} MiB",
            env.dir.display(),
            free >> 20
        ));
        return;
    }
    let t0 = std::time::Instant::now();
    let bomb = zero_bomb("zeros", SIZE);
    eprintln!(
        "bomb: 2 GiB of zeros -> {} bytes of gzip (built in {:?})",
        bomb.data.len(),
        t0.elapsed()
    );
    assert!(bomb.data.len() < 8 << 20, "a bomb: a few MB");
    let blobs = vec![Blob::gzip(&imagefix::base_layer()), bomb];
    let img = env.oci("bomb", &imagefix::oci_files_of(&blobs));
    let before = env.snapshot();
    let args = [
        "run",
        "-q",
        img.to_str().unwrap(),
        "--",
        "/bin/stat",
        "-c",
        "%s",
        "/zeros",
    ];
    // GNU time forks hpcc from its own small process, so %M is hpcc's peak
    // alone. wait4 from here is the fallback: a child forked from this
    // test process (which other tests may have made large) starts with
    // the test's resident pages, so it can only give an upper bound.
    let time_out = std::env::temp_dir().join(format!("hh-time-{}", std::process::id()));
    let have_time = Path::new("/usr/bin/time").is_file();
    let (o, maxrss_kib, took, how) = if have_time {
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "%M", "-o", time_out.to_str().unwrap()])
            .arg(runtime_tests::hpcc_bin())
            .args(args)
            .env("HPCC_CACHE_DIR", env.cache())
            .current_dir("/")
            .stdin(Stdio::null());
        let (o, _, took) = run_measured(cmd);
        let text = std::fs::read_to_string(&time_out).unwrap();
        let _ = std::fs::remove_file(&time_out);
        let kib: u64 = text
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .unwrap_or_else(|| panic!("no %M in {text:?}"));
        (o, kib, took, "GNU time %M")
    } else {
        tool_missing("/usr/bin/time (GNU time); measuring with wait4, an upper bound");
        let (o, kib, took) = run_measured(env.cmd(&args));
        (o, kib, took, "wait4 ru_maxrss")
    };
    eprintln!(
        "bomb: unpack + run took {took:?}, peak RSS of hpcc {} KiB ({} MiB) by {how}",
        maxrss_kib,
        maxrss_kib >> 10
    );
    sane(&env, &before, &o, "gzip bomb");
    assert!(o.status.success(), "bomb: {}", stderr(&o));
    assert_eq!(stdout(&o), format!("{SIZE}\n"));
    assert!(maxrss_kib > 512, "{how} measured nothing: {maxrss_kib} KiB");
    assert!(
        maxrss_kib < 100 << 10,
        "the unpack must stream: peak RSS {maxrss_kib} KiB"
    );
    let rootfs = env
        .cache()
        .join("images")
        .join(&env.images()[0])
        .join("rootfs");
    let m = std::fs::metadata(rootfs.join("zeros")).unwrap();
    assert_eq!(m.len(), SIZE);
    // The tail is zeros too (the whole file was written, not just sized).
    let mut f = std::fs::File::open(rootfs.join("zeros")).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(-(1 << 20))).unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert!(tail.len() == 1 << 20 && tail.iter().all(|&b| b == 0));
    drop(f);
    // 2 GiB on disk: remove it now, through hpcc, and see it gone.
    let o = env.run(&["rmi", img.to_str().unwrap()]);
    assert!(o.status.success(), "rmi: {}", stderr(&o));
    assert!(env.images().is_empty() && env.tmp_entries().is_empty());
}

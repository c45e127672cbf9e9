//! Bundles: a `config.json` (from `hpcc spec`, edited by the test) next
//! to a rootfs made of the host's static busybox.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::files::{mkdir_mode, path_str};

/// Applets linked into every test rootfs (`/bin/<applet>` -> `busybox`).
pub const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "id", "ls", "true", "false", "hostname", "kill", "ps", "mount",
    "grep", "test", "env", "readlink", "stat", "touch",
];

/// Where the static busybox (Debian package `busybox-static`) is looked for.
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The hostname every test bundle gets, so tests can check it from inside.
pub const TEST_HOSTNAME: &str = "hpcc-test";

/// `process.args` that run `script` with the rootfs's `sh -c`.
pub fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

/// A bundle folder: `config.json` plus a busybox `rootfs`.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The bundle path as a `&str` for command lines.
    pub fn path(&self) -> &str {
        path_str(&self.dir)
    }

    /// Changes the config with `f` and writes it back to `config.json`.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    /// Sets `process.args`.
    pub fn set_args(&mut self, args: &[&str]) -> &mut Self {
        self.edit(|c| c["process"]["args"] = Value::from(args.to_vec()))
    }

    /// Removes the namespace of type `ty` from `linux.namespaces`.
    pub fn remove_namespace(&mut self, ty: &str) -> &mut Self {
        self.edit(|c| {
            if let Some(list) = c["linux"]["namespaces"].as_array_mut() {
                list.retain(|ns| ns["type"] != ty);
            }
        })
    }

    pub fn hostname(&self) -> &str {
        self.config["hostname"].as_str().unwrap_or_default()
    }

    fn save(&self) {
        let text = serde_json::to_string_pretty(&self.config)
            .unwrap_or_else(|e| panic!("serialising config.json: {e}"));
        fs::write(self.config_path(), text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.config_path().display()));
    }
}

/// Path to the host's static busybox.
///
/// # Panics
/// When none is installed or it is dynamically linked (which would fail in a
/// rootfs that has no libc).
pub fn busybox() -> PathBuf {
    let Some(path) = BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        panic!(
            "no busybox at {BUSYBOX_CANDIDATES:?}: install the static one \
             (`apt-get install busybox-static`)"
        );
    };
    assert!(
        !elf_has_interpreter(&path),
        "{} is dynamically linked; the test rootfs needs a static busybox \
         (`apt-get install busybox-static`)",
        path.display()
    );
    path
}

/// Whether an ELF64 little-endian file has a PT_INTERP program header.
fn elf_has_interpreter(path: &Path) -> bool {
    let mut head = Vec::new();
    let read = fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
    if read.is_err() || head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let mut off_bytes = [0u8; 8];
    off_bytes.copy_from_slice(&head[0x20..0x28]);
    let phoff = u64::from_le_bytes(off_bytes) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        head.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == 3)
    })
}

/// Builds a busybox rootfs at `rootfs` (which must not exist yet).
pub fn make_rootfs(rootfs: &Path) {
    mkdir_mode(rootfs, 0o755);
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        mkdir_mode(&rootfs.join(dir), if dir == "tmp" { 0o1777 } else { 0o755 });
    }
    let target = rootfs.join("bin/busybox");
    let source = busybox();
    fs::copy(&source, &target)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", source.display(), target.display()));
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", target.display()));
    for applet in APPLETS {
        let link = rootfs.join("bin").join(applet);
        symlink("busybox", &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .unwrap_or_else(|e| panic!("writing etc/passwd: {e}"));
    fs::write(rootfs.join("etc/group"), "root:x:0:\n")
        .unwrap_or_else(|e| panic!("writing etc/group: {e}"));
}

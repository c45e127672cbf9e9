//! Replacing a file in one step, so a reader never sees half of it.

use anyhow::{anyhow, Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `data` to a temporary file beside `path` and renames it into
/// place. For runtime state (state.json, pid files), which describes
/// processes that a reboot ends anyway: no fsync, as runc and crun do, since
/// on a disk-backed state directory it cost ~0.8 ms per write here.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_replacing(path, data, mode, false)
}

/// Like [`write_atomic`], and fsynced before the rename: for what must
/// survive a crash (the image cache's references).
pub fn write_durable(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_replacing(path, data, mode, true)
}

fn write_replacing(path: &Path, data: &[u8], mode: u32, sync: bool) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file path", path.display()))?;
    // An unguessable name, created exclusively and never through a
    // symlink: the pid file may live in a directory others can write.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = parent.join(format!(
        ".{}.tmp-{}-{nonce:x}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(anyhow!(e)).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

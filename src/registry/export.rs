//! A pulled image written out as an OCI archive (`-o FILE.tar`) or an OCI
//! layout (`--layout DIR`), both of which `hpcc run` takes. Each is built
//! beside its destination under a `.NAME.partial.HOST.PID` name and renamed
//! into place only when complete, so a failed or killed pull never leaves
//! a file that looks finished.

use super::pull::{layout_index, BlobStore, Resolution};
use crate::fs::remove_tree;
use crate::image::digest::Digest;
use anyhow::{anyhow, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The prefix of every partial output for `dest` made on this node:
/// `.NAME.partial.HOST.` and then the pid of the pull writing it. Each pull
/// has its own, so two pulls to one destination never write one file (the
/// last rename wins, and either is whole), and the host keeps nodes that
/// share a filesystem from judging each other's pids.
fn partial_prefix(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.partial.{host}.")
}

/// This pull's partial output beside `dest`, after removing those that
/// pulls killed on this node left behind. A live pull holds an exclusive
/// flock on its partial output, so one in another pid namespace (where our
/// kill(2) cannot see its pid) is left alone all the same.
fn partial_sibling(dest: &Path) -> PathBuf {
    let prefix = partial_prefix(dest);
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = dead_writer(&name, &prefix, std::process::id()) {
                if unheld(&e.path()) {
                    crate::debug!("removing {name}, left by pull {pid}, which is gone");
                    let _ = remove_tree(&e.path());
                }
            }
        }
    }
    dest.with_file_name(format!("{prefix}{}", std::process::id()))
}

/// The pid in a partial output's `name`, if it has our `prefix` and that
/// process no longer exists. A partial with our own pid (`me`) is from an
/// earlier process that had it: in a container, pids repeat from run to run.
fn dead_writer(name: &str, prefix: &str, me: u32) -> Option<i32> {
    let pid: i32 = name.strip_prefix(prefix)?.parse().ok()?;
    let gone = pid > 0
        && (u32::try_from(pid) == Ok(me)
            || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH));
    gone.then_some(pid)
}

/// True when no process holds the flock a writing pull keeps on `p`.
fn unheld(p: &Path) -> bool {
    fs::File::open(p).is_ok_and(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok())
}

/// The exclusive flock a pull holds on its partial output while writing
/// it (see [`partial_sibling`]).
fn hold(f: &fs::File, p: &Path) -> Result<Flock<fs::File>> {
    let dup = f
        .try_clone()
        .with_context(|| format!("opening {}", p.display()))?;
    Flock::lock(dup, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| anyhow!("locking {}: {e}", p.display()))
}

/// Every blob of the image, each once: manifest, config, layers.
fn blobs(res: &Resolution) -> Vec<Digest> {
    let mut out = vec![res.manifest.digest.clone(), res.config.0.clone()];
    for (d, _) in &res.layers {
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

/// An OCI archive: a tar of the layout, with fixed owners, modes and
/// times, so one image always gives the same bytes.
pub fn to_archive(res: &Resolution, store: &BlobStore, dest: &Path) -> Result<()> {
    let partial = partial_sibling(dest);
    // The lock is let go only once the file has its final name.
    let result = write_archive(res, store, &partial).and_then(|_held| {
        fs::rename(&partial, dest).with_context(|| format!("renaming into {}", dest.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn write_archive(res: &Resolution, store: &BlobStore, partial: &Path) -> Result<Flock<fs::File>> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let held = hold(&file, partial)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let header = |size: u64, mode: u32, kind: tar::EntryType| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_entry_type(kind);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let what = || format!("writing {}", partial.display());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, 0o755, tar::EntryType::Directory);
        tar.append_data(&mut h, dir, std::io::empty())
            .with_context(what)?;
    }
    let index = serde_json::to_vec(&layout_index(res))?;
    for (name, data) in [("oci-layout", OCI_LAYOUT), ("index.json", index.as_slice())] {
        let mut h = header(data.len() as u64, 0o644, tar::EntryType::Regular);
        tar.append_data(&mut h, name, data).with_context(what)?;
    }
    for d in blobs(res) {
        let src = store.path(&d);
        let f = fs::File::open(&src).with_context(|| format!("{}", src.display()))?;
        let mut h = header(f.metadata()?.len(), 0o644, tar::EntryType::Regular);
        tar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), f)
            .with_context(what)?;
    }
    let mut out = tar.into_inner().with_context(what)?;
    out.flush().with_context(what)?;
    out.get_ref().sync_all().with_context(what)?;
    Ok(held)
}

/// An OCI layout directory, made under a partial name and renamed.
pub fn to_layout(res: &Resolution, store: &BlobStore, dest: &Path) -> Result<()> {
    let partial = partial_sibling(dest);
    let result = write_layout(res, store, &partial).and_then(|_held| {
        fs::rename(&partial, dest).with_context(|| format!("renaming into {}", dest.display()))
    });
    if result.is_err() {
        let _ = remove_tree(&partial);
    }
    result
}

fn write_layout(res: &Resolution, store: &BlobStore, partial: &Path) -> Result<Flock<fs::File>> {
    // Made here and now, never an older one reused.
    fs::DirBuilder::new()
        .mode(0o755)
        .create(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let held = hold(
        &fs::File::open(partial).with_context(|| format!("opening {}", partial.display()))?,
        partial,
    )?;
    let blob_dir = partial.join("blobs/sha256");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&blob_dir)
        .with_context(|| format!("creating {}", blob_dir.display()))?;
    for d in blobs(res) {
        let to = blob_dir.join(d.hex());
        fs::copy(store.path(&d), &to).with_context(|| format!("writing {}", to.display()))?;
    }
    let index = serde_json::to_vec_pretty(&layout_index(res))?;
    fs::write(partial.join("index.json"), index)
        .with_context(|| format!("writing {}/index.json", partial.display()))?;
    fs::write(partial.join("oci-layout"), OCI_LAYOUT)
        .with_context(|| format!("writing {}/oci-layout", partial.display()))?;
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_nodes_partials_of_dead_pulls_are_stale() {
        let prefix = ".img.tar.partial.node7.";
        // No process has the largest pid; pid 1 is alive; our own pid is
        // an earlier process's that had it.
        let dead = format!("{prefix}{}", i32::MAX);
        assert_eq!(dead_writer(&dead, prefix, 4242), Some(i32::MAX));
        assert_eq!(dead_writer(&format!("{prefix}1"), prefix, 4242), None);
        assert_eq!(
            dead_writer(&format!("{prefix}4242"), prefix, 4242),
            Some(4242)
        );
        for other in [
            format!(".img.tar.partial.node8.{}", i32::MAX),
            format!(".other.tar.partial.node7.{}", i32::MAX),
            ".img.tar.partial.node7.x".to_string(),
            ".img.tar.partial.node7.0".to_string(),
            "img.tar".to_string(),
        ] {
            assert_eq!(dead_writer(&other, prefix, 4242), None, "{other}");
        }
    }

    #[test]
    fn a_partial_held_by_a_live_pull_is_not_removable() {
        let dir = std::env::temp_dir().join(format!("hpcc-held-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let p = dir.join(".x.tar.partial.n.1");
        let f = fs::File::create(&p).unwrap();
        let held = hold(&f, &p).unwrap();
        assert!(!unheld(&p));
        drop(held);
        assert!(unheld(&p));
        fs::remove_dir_all(&dir).unwrap();
    }
}

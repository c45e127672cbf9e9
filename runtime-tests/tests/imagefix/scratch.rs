//! A scratch directory for one image test, with its own image cache.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{hpcc_with_cache, list};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A number no scratch directory of this test process has had yet: two
/// scratch folders (or a test's other temporary files) never share a name.
pub fn next_seq() -> usize {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// A scratch directory, `<tmp>/<prefix>-<tag>-<pid>-<n>`, whose `cache/`
/// is the image cache of every hpcc it runs. Dropping it removes the whole
/// tree (unpacked images keep read-only directories; see
/// [`runtime_tests::remove_tree`]).
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// A fresh `hpcc-img-<tag>-...` directory.
    pub fn new(tag: &str) -> Scratch {
        Scratch::with_prefix("hpcc-img", tag)
    }

    /// A fresh, empty `<prefix>-<tag>-...` directory.
    pub fn with_prefix(prefix: &str, tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{tag}-{}-{}",
            std::process::id(),
            next_seq()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// `hpcc ARGS` with this cache (see [`hpcc_with_cache`]).
    pub fn cmd(&self, args: &[&str]) -> Command {
        hpcc_with_cache(&self.cache(), args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running hpcc")
    }

    /// The cached images: one digest-named folder each.
    pub fn images(&self) -> Vec<String> {
        list(&self.cache().join("images"))
    }

    /// Unpacks under way, or left by a killed one.
    pub fn tmp_entries(&self) -> Vec<String> {
        list(&self.cache().join("tmp"))
    }

    /// What the cache's mount directory holds on the host, beyond the
    /// read-only root's mount point `merged` left empty (the private
    /// overlay's scratch lives on a tmpfs only its container sees).
    pub fn mount_dir_leftovers(&self) -> Vec<String> {
        let mnt = self.cache().join("mnt");
        let mut out: Vec<String> = list(&mnt).into_iter().filter(|e| e != "merged").collect();
        out.extend(
            list(&mnt.join("merged"))
                .into_iter()
                .map(|e| format!("merged/{e}")),
        );
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        runtime_tests::remove_tree(&self.dir);
    }
}

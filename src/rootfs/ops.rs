//! The steps of a mount plan, as plain data (bubblewrap's SetupOp list
//! plays the same part). `plan.rs` decides them, `executor.rs` performs
//! them; nothing here makes a system call.

use super::resolve::Leaf;
use nix::errno::Errno;
use nix::mount::MsFlags;
use std::path::PathBuf;

/// A mount plan in two phases: `setup` runs up to and including the switch
/// of root; `finish` runs after the container's files, console, hostname
/// and sysctls are in place (masked and read-only paths, a read-only
/// root, the asked-for root propagation), so nothing before needs to
/// write through them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountPlan {
    pub setup: Vec<Op>,
    pub finish: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// mount(NULL, "/", NULL, flags): the propagation of every mount in our
    /// namespace (before the switch of root) or of the new root (after).
    PropagateRoot { flags: MsFlags, label: &'static str },
    /// pivot_root refuses a shared parent mount: make the mount holding
    /// this host path private (in our namespace), as runc does.
    PrivatizeParent(PathBuf),
    /// pivot_root needs the new root to be a mount point: bind it on itself.
    BindOnItself(PathBuf),
    /// Image mode's root at `merged`: where one is planned, a read-only
    /// overlay of a skeleton over the cached image `lower`; else (or when
    /// the skeleton cannot be made or mounted) a tmpfs on `merged`'s parent
    /// (a directory of the cache only our mount namespace sees mounted),
    /// then the image under an overlay, or where the kernel refuses that
    /// (unprivileged overlayfs came in Linux 5.11), under an underlay.
    /// Either way mount points can be made and the image never changes.
    ImageRoot(ImageRoot),
    /// From here on, container paths resolve inside this directory.
    OpenRoot(PathBuf),
    /// A filesystem or a bind at a container path, with what follows it.
    Mount(MountOp),
    /// Applies `Finish` to whatever is mounted at a container path.
    Finish { dest: PathBuf, then: Finish },
    /// A remount of a filesystem at a container path (not a bind): new
    /// flags and data, e.g. a tmpfs made read-only once it is filled.
    Remount {
        dest: PathBuf,
        flags: MsFlags,
        data: Option<String>,
        label: String,
    },
    /// A directory at a container path (an existing one is fine).
    MakeDir(PathBuf),
    /// A symlink at a container path (an existing name is left alone).
    Symlink { target: PathBuf, link: PathBuf },
    /// A device node, made with mknod (real root only).
    MakeNode(Node),
    /// The createRuntime and createContainer hooks run here.
    Hooks,
    /// pivot_root into the rootfs and detach the old root.
    PivotRoot(PathBuf),
    /// `--no-pivot`: MS_MOVE the rootfs over / and chroot.
    MoveRoot(PathBuf),
    /// No mount namespace of its own: chroot into the rootfs. Its mounts
    /// stay in the caller's mount table until `delete` removes them.
    Chroot(PathBuf),
    /// linux.maskedPaths: a read-only tmpfs on a directory, /dev/null on
    /// anything else, nothing where the path does not exist.
    Mask(PathBuf),
    /// linux.readonlyPaths: bound on itself and remounted read-only
    /// (a missing path is skipped).
    ReadOnlyPath { path: PathBuf, keep_locked: bool },
    /// root.readonly.
    RootReadOnly { keep_locked: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRoot {
    pub lower: PathBuf,
    pub merged: PathBuf,
    pub method: RootMethod,
    /// `--writable-tmpfs`: the image's own files writable (only an
    /// overlay can give that).
    pub writable: bool,
    /// In a user namespace, the underlay's read-only remounts keep the
    /// flags the kernel locked on the cache's filesystem.
    pub keep_locked: bool,
    pub underlay: Underlay,
    /// Generated files (/etc/passwd, ...) written into the root once it is
    /// built, before anything is mounted over it.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Tried first: the root as a read-only overlay of a prepared skeleton
    /// over the image. No tmpfs, no upper layer, nothing written per start.
    pub skeleton: Option<Skeleton>,
}

/// The few entries a read-only root needs beyond the image (the generated
/// files and the mount points the image lacks), made once in a directory
/// of the cache named by their digest, and stacked over the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skeleton {
    /// Where it is, once made.
    pub dir: PathBuf,
    /// Where the image's skeletons are made.
    pub dirs: SkeletonDirs,
    /// Parents before children.
    pub entries: Vec<SkeletonEntry>,
}

/// Where one image's skeletons are kept (`store`), where this process
/// makes a new one before renaming it into place (`staging`, in the
/// store), and the flock file held meanwhile (`lock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkeletonDirs {
    pub store: PathBuf,
    pub staging: PathBuf,
    pub lock: PathBuf,
}

/// One entry of a skeleton, by its path relative to the root. A
/// directory the image also has takes the image directory's mode.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkeletonEntry {
    Dir(PathBuf),
    File(PathBuf, Vec<u8>),
}

impl SkeletonEntry {
    pub fn path(&self) -> &std::path::Path {
        match self {
            SkeletonEntry::Dir(p) | SkeletonEntry::File(p, _) => p,
        }
    }
}

/// How image mode builds its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootMethod {
    /// The overlay, or the underlay where the kernel refuses it.
    Auto,
    Overlay,
    Underlay,
}

/// Apptainer's underlay: the root is a tmpfs, each entry of the image's
/// top directory bound into it read-only (symlinks copied), and a
/// directory that must hold a mount point the image lacks is itself made
/// on the tmpfs with its own entries bound one by one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Underlay {
    /// Image directories (relative) made on the tmpfs, their entries bound
    /// one by one; the top directory always is.
    pub expand: std::collections::BTreeSet<PathBuf>,
    /// Image entries (relative) left out: generated files take their place.
    pub omit: std::collections::BTreeSet<PathBuf>,
}

/// One mount at a container path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOp {
    /// Where, inside the container.
    pub dest: PathBuf,
    pub what: What,
    /// What to create at `dest` when it does not exist.
    pub leaf: Leaf,
    /// runc's /proc rule: refuse a destination that resolves into the
    /// container's procfs, but for /proc itself and the files lxcfs emulates.
    pub refuse_proc: bool,
    /// Tried when the mount fails with one of these errors.
    pub fallback: Option<(Vec<Errno>, Box<MountOp>)>,
    /// What follows a successful mount.
    pub then: Finish,
    /// Names the mount in errors ("mount /data", "binding device /dev/null").
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A bind of a host path (recursive: rbind).
    Bind { source: PathBuf, recursive: bool },
    /// A filesystem: mount(source, dest, fstype, flags, data).
    Fs {
        fstype: String,
        source: PathBuf,
        flags: MsFlags,
        data: Option<String>,
    },
}

/// What a first mount call cannot do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// Flags a bind needs a remount to apply (ro, nosuid, ...).
    pub remount: MsFlags,
    /// In a user namespace the kernel locks the nosuid/nodev/noexec and
    /// atime flags a mount inherited: a remount must carry them over.
    pub keep_locked: bool,
    /// An atime option was given, so the source's atime flags are not kept.
    pub explicit_atime: bool,
    /// "rro": the whole tree read-only (mount_setattr).
    pub recursive_ro: bool,
    /// Propagation changes, applied one at a time.
    pub propagation: Vec<MsFlags>,
}

impl Default for Finish {
    fn default() -> Self {
        Finish {
            remount: MsFlags::empty(),
            keep_locked: false,
            explicit_atime: false,
            recursive_ro: false,
            propagation: Vec::new(),
        }
    }
}

impl Finish {
    pub fn is_empty(&self) -> bool {
        self.remount.is_empty() && !self.recursive_ro && self.propagation.is_empty()
    }
}

/// A device node for mknod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: NodeKind,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Char,
    Block,
    Fifo,
}

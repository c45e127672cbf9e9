//! Command-line definitions. The verbs and flags follow runc's, because
//! containerd-shim-runc-v2, podman (conmon) and Docker call us exactly as
//! they call runc.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The OCI runtime-spec version hpcc implements; `spec` writes it and
/// `--version` and `features` report it.
macro_rules! oci_spec_version {
    () => {
        "1.2.0"
    };
}
pub const OCI_SPEC_VERSION: &str = oci_spec_version!();

const VERSION_TEXT: &str = concat!(
    "version ",
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("HPCC_COMMIT"),
    "\nspec: ",
    oci_spec_version!()
);

#[derive(Parser, Debug)]
#[command(
    name = "hpcc",
    version = VERSION_TEXT,
    long_version = VERSION_TEXT,
    about = "Daemonless, rootless OCI container runtime for HPC (runc-compatible CLI)",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Print version, commit and supported OCI runtime-spec version
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    /// Directory for container state (default /run/hpcc for root, $XDG_RUNTIME_DIR/hpcc otherwise)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Also write errors (and debug lines) to this file
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Format of the --log file
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug information
    #[arg(long)]
    pub debug: bool,
    /// Use the systemd cgroup driver (an error where systemd does not run)
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Treat the caller as unprivileged: true, false or auto
    #[arg(long, value_enum, default_value_t = Rootless::Auto)]
    pub rootless: Rootless,
    /// Accepted for runc compatibility; criu is not used
    #[arg(long, hide = true, value_name = "PATH")]
    pub criu: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rootless {
    True,
    False,
    Auto,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a default config.json into the bundle
    Spec(SpecArgs),
    /// Create a container; its process waits for `start`
    Create(CreateArgs),
    /// Let a created container's process run
    Start(IdArg),
    /// Print a container's OCI state as JSON
    State(IdArg),
    /// Send a signal (default SIGTERM) to a container's process
    Kill(KillArgs),
    /// Remove a container (its process must have stopped, unless --force)
    Delete(DeleteArgs),
    /// Create and start a container from a bundle, then wait for it unless
    /// --detach. `hpcc run IMAGE [-- CMD...]` runs an image instead (see run-image)
    Run(RunArgs),
    /// List containers under the state root
    List(ListArgs),
    /// Print the runtime features JSON (runtime-spec features.md)
    Features,
    /// Run a new process inside a running container
    Exec(ExecArgs),
    /// List the processes of a container
    Ps(PsArgs),
    /// Suspend every process of a container (cgroup freezer, else SIGSTOP)
    Pause(IdArg),
    /// Resume a paused container
    Resume(IdArg),
    /// Change a running container's cgroup resources
    Update(UpdateArgs),
    /// Run an image: `hpcc run IMAGE [-- CMD...]` (also callable as run-image)
    #[command(name = "run-image")]
    RunImage(RunImageArgs),
    /// List the image cache: digest, reference, size, last use
    Images(ImagesArgs),
    /// Remove cached images by digest (prefix), image file or docker://REF
    Rmi(RmiArgs),
    /// Remove leftovers of killed unpacks and images nothing refers to
    Prune(PruneArgs),
    /// Pull docker://REF from a registry into the cache, or into an OCI
    /// archive (-o) or layout (--layout) that `hpcc run` takes
    Pull(PullArgs),
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Write an OCI archive here instead of unpacking into the cache
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE.tar",
        conflicts_with = "layout"
    )]
    pub output: Option<PathBuf>,
    /// Write a new OCI layout directory here instead
    #[arg(long, value_name = "DIR")]
    pub layout: Option<PathBuf>,
    /// The platform to pull from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// No progress bar
    #[arg(short, long)]
    pub quiet: bool,
    /// docker://[REGISTRY/]REPO[:TAG|@sha256:DIGEST] (a short name is on Docker Hub)
    pub reference: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// JSON file with the process to run (runtime-spec Process), instead of CMD
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Write the new process's PID to this file
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Return once the process has started
    #[arg(short, long)]
    pub detach: bool,
    /// Unix socket to receive the pty master through SCM_RIGHTS
    #[arg(long = "console-socket", value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Give the process a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (repeatable)
    #[arg(short, long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// UID[:GID] to run as
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Add a capability to the process's bounding, effective and permitted sets (repeatable)
    #[arg(long = "cap", value_name = "CAP")]
    pub caps: Vec<String>,
    /// Set no_new_privileges for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass N extra file descriptors (3 .. 3+N-1) to the process
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Container ID
    pub id: String,
    /// Command and arguments (unless --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// JSON file of runtime-spec linux.resources, or - for stdin
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Container ID
    pub id: String,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Container ID
    pub id: String,
}

/// `hpcc run IMAGE [-- CMD...]`. IMAGE is a docker-archive or oci-archive
/// tar, an OCI layout directory, or `docker://[REGISTRY/]REPO[:TAG|@DIGEST]`;
/// `IMAGE@REF` or `IMAGE:TAG` picks one image from an archive that holds
/// several.
#[derive(Args, Debug)]
pub struct RunImageArgs {
    /// Replace the image's ENTRYPOINT ('' clears it)
    #[arg(long, value_name = "PATH")]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Give the container a throwaway writable layer (tmpfs)
    #[arg(long = "writable-tmpfs")]
    pub writable_tmpfs: bool,
    /// Run in a PID namespace of its own (hpcc then stays as the parent)
    #[arg(long)]
    pub pid: bool,
    /// No progress bar or notes
    #[arg(short, long)]
    pub quiet: bool,
    /// Bind a host path: SRC[:DST[:ro]] (repeatable; $HOME, /tmp and
    /// /dev/shm are bound by default)
    #[arg(short = 'b', long = "bind", value_name = "SRC[:DST[:ro]]")]
    pub bind: Vec<String>,
    /// Set a variable inside: NAME=VALUE, or NAME to copy the host's (repeatable)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Read NAME=VALUE lines from a file (repeatable)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Start from the image's environment plus launcher variables and -e only
    #[arg(long = "cleanenv")]
    pub clean_env: bool,
    /// Map yourself to root inside (for installing into a --writable-tmpfs container)
    #[arg(long)]
    pub fakeroot: bool,
    /// GPUs to show: all, none, or host indices like 0,2 (default: NVIDIA_VISIBLE_DEVICES, else all)
    #[arg(long, value_name = "all|none|LIST")]
    pub gpus: Option<String>,
    /// A device to add: a CDI name (nvidia.com/gpu=0, nvidia.com/gpu=all,
    /// from the specs in /etc/cdi and /var/run/cdi) or a host device node
    /// HOST[:CONTAINER]; repeatable
    #[arg(long = "device", value_name = "CDI-NAME|PATH")]
    pub device: Vec<String>,
    /// Share one container with the other ranks on this node even when no
    /// launcher is recognised (ranks under mpirun/srun join automatically)
    #[arg(long, conflicts_with = "no_join")]
    pub join: bool,
    /// Run in a container of our own even under mpirun/srun
    #[arg(long = "no-join")]
    pub no_join: bool,
    /// Group ranks by this tag instead of the launcher's job id
    #[arg(long = "join-tag", value_name = "TAG")]
    pub join_tag: Option<String>,
    /// Seconds a rank waits for its node's container to be built
    #[arg(long = "join-timeout", value_name = "SECS", default_value_t = 60)]
    pub join_timeout: u64,
    /// Write a JSON record of what defines this run (image and layer
    /// digests, hpcc version, kernel, binds, devices, driver, env keys,
    /// rank and job); in FILE, %r is the rank, %h the host, %j the job
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// With a docker:// image: use only the cache, never the registry
    /// (a tag then means what it meant at the last pull)
    #[arg(long)]
    pub offline: bool,
    /// Run exactly the image a --record file names (refusing any other
    /// digest) and say what differs from the recorded run; IMAGE may then
    /// be left out
    #[arg(long = "from-record", value_name = "FILE")]
    pub from_record: Option<PathBuf>,
    /// Image tar, OCI layout directory or docker://REF, optionally @REF or :TAG
    #[arg(required_unless_present = "from_record")]
    pub image: Option<String>,
    /// Command and arguments (after `--`, or directly after IMAGE); they
    /// replace the image's CMD
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Digests (or unique prefixes), image files, or docker://REF (a tag
    /// removes the image of every platform pulled under it)
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every cached image, not only unreferenced ones
    #[arg(short, long)]
    pub all: bool,
}

/// Global flags that take a value, for finding the verb in argv.
const GLOBAL_VALUE_FLAGS: [&str; 5] = ["--root", "--log", "--log-format", "--rootless", "--criu"];
/// Flags of `run` (either mode) that take a value.
const RUN_VALUE_FLAGS: [&str; 18] = [
    "-b",
    "--bundle",
    "--bind",
    "--pid-file",
    "--console-socket",
    "--preserve-fds",
    "--entrypoint",
    "-w",
    "--workdir",
    "-e",
    "--env",
    "--env-file",
    "--gpus",
    "--device",
    "--join-tag",
    "--join-timeout",
    "--record",
    "--from-record",
];

/// `hpcc run` serves two front doors. The argument is an image when it
/// names an image tar or OCI layout, or when `--` follows it; then argv is
/// rewritten to `run-image`. Otherwise `run` keeps runc's meaning.
/// `looks_like_image` says whether an argument names an image.
pub fn route_image_run(
    args: Vec<std::ffi::OsString>,
    looks_like_image: impl Fn(&str) -> bool,
) -> Vec<std::ffi::OsString> {
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 1;
    while i < text.len() {
        let a = &text[i];
        if GLOBAL_VALUE_FLAGS.contains(&a.as_str()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            break;
        }
    }
    if text.get(i).map(String::as_str) != Some("run") {
        return args;
    }
    let verb = i;
    let mut j = verb + 1;
    while j < text.len() {
        let a = &text[j];
        if a == "--" {
            return args;
        }
        // Only image runs are recorded, so only they can be replayed.
        if a == "--from-record" || a.starts_with("--from-record=") {
            let mut out = args;
            out[verb] = "run-image".into();
            return out;
        }
        if RUN_VALUE_FLAGS.contains(&a.as_str()) {
            j += 2;
            continue;
        }
        if a.starts_with('-') {
            j += 1;
            continue;
        }
        let followed_by_dashes = text.get(j + 1).map(String::as_str) == Some("--");
        if followed_by_dashes || looks_like_image(a) {
            let mut out = args;
            out[verb] = "run-image".into();
            return out;
        }
        return args;
    }
    args
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// Generate a config for an unprivileged user (user namespace, no network namespace)
    #[arg(long)]
    pub rootless: bool,
    /// Bundle directory to write config.json into
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CreateOpts {
    /// Bundle directory holding config.json (default: current directory)
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Write the container process's PID to this file
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to receive the pty master through SCM_RIGHTS
    #[arg(long = "console-socket", value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra file descriptors (3 .. 3+N-1) to the container process
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: CreateOpts,
    /// Container ID
    pub id: String,
}

#[derive(Args, Debug)]
pub struct IdArg {
    /// Container ID
    pub id: String,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init
    #[arg(short, long)]
    pub all: bool,
    /// Container ID
    pub id: String,
    /// Signal as a number, NAME or SIGNAME
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill the container's processes first if it is still running
    #[arg(short, long)]
    pub force: bool,
    /// Container ID
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: CreateOpts,
    /// Return once the container has started instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Container ID
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the container IDs
    #[arg(short, long)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_flag_forms_parse() {
        let a = Cli::try_parse_from(["hpcc", "--root", "/r", "--log=/l", "state", "x"]).unwrap();
        assert_eq!(a.global.root.as_deref(), Some(std::path::Path::new("/r")));
        assert_eq!(a.global.log.as_deref(), Some(std::path::Path::new("/l")));
        let b =
            Cli::try_parse_from(["hpcc", "--log-format=json", "--rootless=true", "list"]).unwrap();
        assert_eq!(b.global.log_format, LogFormat::Json);
        assert_eq!(b.global.rootless, Rootless::True);
    }

    #[test]
    fn create_flags_parse() {
        let c = Cli::try_parse_from([
            "hpcc",
            "create",
            "-b",
            "/b",
            "--pid-file=/p",
            "--console-socket",
            "/s",
            "--no-pivot",
            "--no-new-keyring",
            "--preserve-fds",
            "2",
            "id1",
        ])
        .unwrap();
        let Command::Create(c) = c.command else {
            panic!("not create")
        };
        assert_eq!(c.id, "id1");
        assert_eq!(c.opts.preserve_fds, 2);
        assert!(c.opts.no_pivot && c.opts.no_new_keyring);
    }

    fn routed(v: &[&str]) -> Vec<String> {
        route_image_run(v.iter().map(|s| s.into()).collect(), |a| {
            crate::image::ImageArg::parse(a).looks_like_image()
        })
        .into_iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect()
    }

    #[test]
    fn run_routes_images_and_keeps_runc_ids() {
        assert_eq!(
            routed(&["hpcc", "run", "img.tar", "--", "ls"])[1],
            "run-image"
        );
        assert_eq!(
            routed(&["hpcc", "--root", "/r", "run", "-w", "/x", "img", "--", "ls"])[3],
            "run-image"
        );
        assert_eq!(routed(&["hpcc", "run", "--bundle", "/b", "c1"])[1], "run");
        assert_eq!(routed(&["hpcc", "run", "-d", "c1"])[1], "run");
        assert_eq!(routed(&["hpcc", "state", "x", "--"])[1], "state");
        let layout = std::env::temp_dir().join(format!("hpcc-route-{}", std::process::id()));
        std::fs::create_dir_all(&layout).unwrap();
        std::fs::write(layout.join("oci-layout"), "{}").unwrap();
        assert_eq!(
            routed(&["hpcc", "run", layout.to_str().unwrap()])[1],
            "run-image"
        );
        std::fs::remove_dir_all(layout).unwrap();
    }

    #[test]
    fn kill_defaults_to_term() {
        let c = Cli::try_parse_from(["hpcc", "kill", "x"]).unwrap();
        let Command::Kill(k) = c.command else {
            panic!("not kill")
        };
        assert_eq!(k.signal, "SIGTERM");
        assert!(!k.all);
    }
}

//! The Spec image mode runs: built from the image config (Docker's
//! semantics for ENTRYPOINT, CMD, ENV, WORKDIR and USER) and the command
//! line, never from a file.

use crate::hpc::HpcPlan;
use crate::image::config::ImageConfig;
use anyhow::{anyhow, bail, Result};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};
use std::path::Path;

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities, for root running an image as root.
const ROOT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[derive(Debug, Default, Clone)]
pub struct ImageRunOptions {
    /// Arguments after `--`: they replace CMD.
    pub command: Vec<String>,
    /// `--entrypoint`: Some("") clears ENTRYPOINT, Some(p) replaces it.
    pub entrypoint: Option<String>,
    pub workdir: Option<String>,
    pub writable_tmpfs: bool,
    pub pid_namespace: bool,
    /// Map the caller to root inside (rootless only).
    pub fakeroot: bool,
}

/// Who runs the program.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Not real root: a user namespace maps the caller to itself.
    pub rootless: bool,
}

/// ENTRYPOINT + CMD with Docker's override rules.
pub fn command_line(cfg: &ImageConfig, opts: &ImageRunOptions) -> Result<Vec<String>> {
    let c = cfg.container();
    let mut args: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => c.entrypoint.clone().unwrap_or_default(),
    };
    if !opts.command.is_empty() {
        args.extend(opts.command.iter().cloned());
    } else if opts.entrypoint.is_none() {
        // Docker drops the image's CMD when --entrypoint is given.
        args.extend(c.cmd.clone().unwrap_or_default());
    }
    if args.is_empty() {
        bail!("the image has no ENTRYPOINT or CMD; give a command after --");
    }
    Ok(args)
}

pub fn spec_from_image(
    cfg: &ImageConfig,
    rootfs: &Path,
    opts: &ImageRunOptions,
    who: Caller,
    hpc: &HpcPlan,
) -> Result<Spec> {
    let c = cfg.container();
    let args = command_line(cfg, opts)?;
    let mut env: Vec<String> = hpc.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_string());
    }
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| hpc.cwd.as_ref().map(|p| p.display().to_string()))
        .or_else(|| c.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        bail!("working directory {cwd:?} must be an absolute path");
    }
    let (uid, gid) = if who.rootless {
        if let Some(u) = c.user.as_deref().filter(|u| !u.is_empty()) {
            crate::debug!(
                "image USER {u:?} ignored: rootless runs keep the caller's uid {}",
                who.uid
            );
        }
        (hpc.inside_uid, hpc.inside_gid)
    } else {
        resolve_user(rootfs, c.user.as_deref().unwrap_or(""))?
    };
    // Groups a CDI spec asks for (a render group, say). Rootless, the
    // process keeps the caller's own groups and cannot gain others.
    let additional_gids: Vec<u32> = if who.rootless {
        Vec::new()
    } else {
        hpc.devices.additional_gids.clone()
    };
    let mut namespaces = vec![json!({"type": "mount"})];
    if who.rootless {
        namespaces.push(json!({"type": "user"}));
    }
    if opts.pid_namespace {
        namespaces.push(json!({"type": "pid"}));
    }
    let mut mounts = base_mounts(opts.pid_namespace, who.rootless, hpc.share_host_dev);
    for b in &hpc.binds {
        let o = bind_options(who.rootless, b.readonly, &["nosuid", "nodev"]);
        mounts.push(json!({"destination": b.dst, "type": "bind", "source": b.src, "options": o}));
    }
    for d in &hpc.devices.binds {
        let o = bind_options(who.rootless, d.readonly, &["nosuid"]);
        mounts.push(
            json!({"destination": d.container, "type": "bind", "source": d.host, "options": o}),
        );
    }
    for m in &hpc.devices.mounts {
        mounts.push(json!({"destination": m.container, "type": m.typ, "source": m.source, "options": m.options}));
    }
    let caps: Value = if who.rootless && !opts.fakeroot {
        json!({})
    } else {
        let list: Vec<&str> = ROOT_CAPS.to_vec();
        json!({"bounding": list, "effective": list, "permitted": list})
    };
    let mut linux = json!({"namespaces": namespaces});
    if !who.rootless {
        // As for an OCI bundle: host root must not reach the kernel's knobs.
        linux["maskedPaths"] = json!(crate::spec::MASKED_PATHS);
        linux["readonlyPaths"] = json!(crate::spec::READONLY_PATHS);
    }
    if who.rootless {
        linux["uidMappings"] =
            json!([{"containerID": hpc.inside_uid, "hostID": who.uid, "size": 1}]);
        linux["gidMappings"] =
            json!([{"containerID": hpc.inside_gid, "hostID": who.gid, "size": 1}]);
    }
    let v = json!({
        "ociVersion": crate::cli::OCI_SPEC_VERSION,
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid, "additionalGids": additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": caps,
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": !opts.writable_tmpfs},
        "mounts": mounts,
        "linux": linux
    });
    serde_json::from_value(v).map_err(|e| anyhow!("building the image spec: {e}"))
}

/// Options for a bind of a host path. In a user namespace the kernel
/// already locks the host's nosuid/nodev/noexec onto the bind, and
/// no_new_privs makes setuid bits inert, so the extra flags (and the
/// remount each costs) are only added for real root.
fn bind_options<'a>(rootless: bool, readonly: bool, hardening: &[&'a str]) -> Vec<&'a str> {
    let mut o = vec!["rbind"];
    if !rootless {
        o.extend_from_slice(hardening);
    }
    if readonly {
        o.push("ro");
    }
    o
}

/// /proc, /sys and a private /dev: the default nodes, a pty instance, and
/// (added by the HPC layer) exactly the host devices this run should see.
fn base_mounts(pid_namespace: bool, rootless: bool, share_host_dev: bool) -> Vec<Value> {
    let proc_mount = if pid_namespace {
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]})
    } else {
        // A fresh proc needs a PID namespace of our own; without one the
        // host's /proc is what the process would see anyway.
        json!({"destination": "/proc", "type": "bind", "source": "/proc",
               "options": bind_options(rootless, false, &["nosuid", "noexec", "nodev"])})
    };
    let mut pts = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if !rootless {
        pts.push("gid=5");
    }
    // Real root with no user namespace could reconfigure the host through
    // /sys; a user namespace already stops that for everyone else.
    let mut sys = bind_options(rootless, false, &["nosuid", "noexec", "nodev"]);
    if !rootless {
        sys.push("rro");
    }
    let dev = if share_host_dev {
        json!({"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]})
    } else {
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=65536k"]})
    };
    let mut mounts = vec![
        proc_mount,
        json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": sys}),
        dev,
    ];
    if !share_host_dev {
        mounts.push(json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": pts}));
    }
    mounts
}

/// USER as Docker reads it: `name`, `uid`, `name:group` or `uid:gid`,
/// looked up in the image's own /etc/passwd and /etc/group.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = crate::hpc::identity::image_file(rootfs, "/etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            lookup(&passwd, |f| f[2].parse().ok() == Some(n))
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(0),
        ),
        Err(_) => {
            let f = lookup(&passwd, |f| f[0] == u)
                .ok_or_else(|| anyhow!("image USER {u:?} is not in the image's /etc/passwd"))?;
            (
                f[2].parse()
                    .map_err(|_| anyhow!("bad uid for {u} in /etc/passwd"))?,
                f[3].parse().unwrap_or(0),
            )
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = crate::hpc::identity::image_file(rootfs, "/etc/group");
                let f = lookup(&group, |f| f[0] == g).ok_or_else(|| {
                    anyhow!("image USER group {g:?} is not in the image's /etc/group")
                })?;
                f[2].parse()
                    .map_err(|_| anyhow!("bad gid for {g} in /etc/group"))?
            }
        },
    };
    Ok((uid, gid))
}

fn lookup(text: &str, pred: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && pred(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let v = json!({"config": {
            "Entrypoint": ep.map(|e| e.to_vec()),
            "Cmd": cmd.map(|c| c.to_vec()),
            "Env": ["A=1"], "WorkingDir": "/work"
        }});
        serde_json::from_value(v).unwrap()
    }

    fn opts(cmd: &[&str], ep: Option<&str>) -> ImageRunOptions {
        ImageRunOptions {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            entrypoint: ep.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn docker_entrypoint_and_cmd_rules() {
        let c = cfg(Some(&["/ep", "-x"]), Some(&["default"]));
        assert_eq!(
            command_line(&c, &opts(&[], None)).unwrap(),
            ["/ep", "-x", "default"]
        );
        assert_eq!(
            command_line(&c, &opts(&["a", "b"], None)).unwrap(),
            ["/ep", "-x", "a", "b"]
        );
        assert_eq!(command_line(&c, &opts(&["a"], Some(""))).unwrap(), ["a"]);
        assert_eq!(
            command_line(&c, &opts(&[], Some("/other"))).unwrap(),
            ["/other"]
        );
        let none = cfg(None, None);
        assert!(command_line(&none, &opts(&[], None))
            .unwrap_err()
            .to_string()
            .contains("after --"));
    }

    fn hpc_plan(env: &[&str]) -> HpcPlan {
        HpcPlan {
            identity: crate::hpc::identity::Identity {
                uid: 1000,
                gid: 1000,
                name: "u".into(),
                group: "g".into(),
                home: "/home/u".into(),
                gecos: String::new(),
            },
            inside_uid: 1000,
            inside_gid: 1000,
            env: env
                .iter()
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            binds: vec![crate::hpc::binds::Bind {
                src: "/home/u".into(),
                dst: "/home/u".into(),
                readonly: false,
            }],
            devices: Default::default(),
            cwd: None,
            files: Vec::new(),
            share_host_dev: false,
        }
    }

    #[test]
    fn spec_has_env_path_workdir_and_identity_map() {
        let c = cfg(None, Some(&["sh"]));
        let who = Caller {
            uid: 1000,
            gid: 1000,
            rootless: true,
        };
        let s = spec_from_image(
            &c,
            Path::new("/r"),
            &opts(&[], None),
            who,
            &hpc_plan(&["A=1"]),
        )
        .unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.cwd(), Path::new("/work"));
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"A=1".to_string()) && env.iter().any(|e| e.starts_with("PATH=")));
        let l = s.linux().as_ref().unwrap();
        assert_eq!(l.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
        assert_eq!(l.uid_mappings().as_ref().unwrap()[0].container_id(), 1000);
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        let dests: Vec<_> = s
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        assert!(dests.contains(&"/home/u".into()) && dests.contains(&"/dev/pts".into()));
        crate::spec::validate(&s).unwrap();
    }

    #[test]
    fn users_resolve_in_the_image() {
        let d = std::env::temp_dir().join(format!("hpcc-user-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(
            d.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1234:99::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(&d, "").unwrap(), (0, 0));
        assert_eq!(resolve_user(&d, "app").unwrap(), (1234, 99));
        assert_eq!(resolve_user(&d, "app:staff").unwrap(), (1234, 50));
        assert_eq!(resolve_user(&d, "77:78").unwrap(), (77, 78));
        assert!(resolve_user(&d, "ghost").is_err());
        std::fs::remove_dir_all(d).unwrap();
    }
}

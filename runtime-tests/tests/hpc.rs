//! The HPC launch layer of image mode: identity, environment, binds, the
//! site config, stand-in devices, inherited fds, --fakeroot and --record.
//! Observed from inside the container; run as root and as a plain user.

mod imagefix;

use imagefix::scratch::Scratch;
use imagefix::Image;
use runtime_tests::{fails_with, ok};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// A scratch directory with its own image cache and the test image.
struct Env {
    scratch: Scratch,
    image: PathBuf,
}

/// The scratch directory's `dir`, `cache()` and removal on drop. Its
/// `cmd` and `run` are replaced by the ones below, which run the image.
impl Deref for Env {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        &self.scratch
    }
}

impl Env {
    fn new(tag: &str) -> Env {
        let scratch = Scratch::with_prefix("hpcc-hpc", tag);
        let image = scratch.dir.join("img.tar");
        let img =
            Image::new(vec![imagefix::base_layer()], "hpc:1").with_config(serde_json::json!({
                "Env": ["PATH=/bin", "FROM_IMAGE=image", "OMPI_MCA_x=image"],
                "Entrypoint": ["/bin/sh", "-c"],
                "WorkingDir": "/"
            }));
        imagefix::write_docker_archive(&image, &[&img]);
        Env { scratch, image }
    }

    /// `hpcc run PRE IMAGE -- SCRIPT`, with this cache and no site config.
    fn cmd(&self, pre: &[&str], script: &str) -> Command {
        let mut c = self.scratch.cmd(&["run"]);
        c.args(pre)
            .arg(&self.image)
            .arg("--")
            .arg(script)
            .env_remove("HPCC_CONFIG");
        c
    }

    fn run(&self, pre: &[&str], script: &str) -> Output {
        self.cmd(pre, script).output().expect("running hpcc")
    }

    fn site(&self, toml: &str) -> PathBuf {
        let p = self.dir.join("site.toml");
        std::fs::write(&p, toml).unwrap();
        p
    }
}

fn my_name() -> String {
    runtime_tests::user_name().expect("running id -un")
}

#[test]
fn the_user_is_themselves_with_their_home() {
    let env = Env::new("identity");
    let home = env.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = env.cmd(
        &[],
        "id -u; id -g; id -un; echo $HOME; pwd; touch $HOME/made-inside && echo wrote",
    );
    c.env("HOME", &home).current_dir(&home);
    let out = ok(&c.output().unwrap());
    // SAFETY: getgid has no preconditions and cannot fail.
    let gid = unsafe { libc::getgid() };
    assert_eq!(
        out,
        format!(
            "{}\n{gid}\n{}\n{}\n{}\nwrote\n",
            uid(),
            my_name(),
            home.display(),
            home.display()
        )
    );
    assert!(
        home.join("made-inside").exists(),
        "$HOME is the host's, bound"
    );
}

#[test]
fn environment_passes_through_with_image_and_launcher_rules() {
    let env = Env::new("env");
    let envfile = env.dir.join("vars");
    std::fs::write(&envfile, "# comment\nFROM_FILE=file\n").unwrap();
    let script = "echo $HOST_ONLY $FROM_IMAGE $OMPI_MCA_x $SLURM_JOB_ID $FROM_FILE $SET $PATH";
    let mut c = env.cmd(
        &["-e", "SET=flag", "--env-file", envfile.to_str().unwrap()],
        script,
    );
    c.env("HOST_ONLY", "host")
        .env("FROM_IMAGE", "host")
        .env("OMPI_MCA_x", "launcher")
        .env("SLURM_JOB_ID", "77");
    assert_eq!(
        ok(&c.output().unwrap()),
        "host image launcher 77 file flag /bin\n"
    );
    let mut c = env.cmd(
        &["--cleanenv"],
        "echo ${HOST_ONLY:-none} $FROM_IMAGE $SLURM_JOB_ID",
    );
    c.env("HOST_ONLY", "host").env("SLURM_JOB_ID", "77");
    assert_eq!(ok(&c.output().unwrap()), "none image 77\n");
    // A locale the image lacks is replaced rather than warned about by every rank.
    let mut c = env.cmd(&[], "echo $LANG $LC_ALL");
    c.env("LANG", "xx_YY.UTF-8").env("LC_ALL", "C");
    assert_eq!(ok(&c.output().unwrap()), "C C\n");
    fails_with(
        &env.run(&["--env-file", "/no/such/file"], "true"),
        "/no/such/file",
    );
}

/// A checkout under a directory the user cannot enter (a mode-700 parent,
/// a lost automount): the bind shows the cwd, but the process could not
/// chdir there. hpcc warns and starts in the image's WorkingDir instead of
/// failing on process.cwd. Root enters any directory, so as root the cwd
/// is kept.
#[test]
fn an_unenterable_cwd_warns_and_starts_in_the_images_workdir() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("cwd");
    let locked = env.dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    let path = std::ffi::CString::new(locked.to_str().unwrap()).unwrap();
    let mut c = env.cmd(&[], "pwd");
    c.current_dir(&locked);
    // SAFETY: chmod(2) on a string made before the fork: no allocation or
    // lock in the child. It runs after the child's chdir into `locked`.
    unsafe {
        c.pre_exec(move || {
            if libc::chmod(path.as_ptr(), 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if uid() == 0 {
        assert_eq!(ok(&o), format!("{}\n", locked.display()));
        assert!(!err.contains("cannot enter"), "{err}");
    } else {
        assert_eq!(ok(&o), "/\n", "the image's WorkingDir");
        assert!(
            err.contains(&format!(
                "cannot enter the current directory {}",
                locked.display()
            )) && err.lines().count() == 1,
            "one warning line: {err}"
        );
    }
}

#[test]
fn binds_cwd_and_the_site_config() {
    let env = Env::new("binds");
    let data = env.dir.join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("f"), "hello\n").unwrap();
    let ro = format!("{}:/in/data:ro", data.display());
    let out = ok(&env.run(
        &["-b", &ro],
        "cat /in/data/f; touch /in/data/x 2>/dev/null || echo read-only",
    ));
    assert_eq!(out, "hello\nread-only\n");
    // The host cwd is kept when a bind shows it.
    let mut c = env.cmd(&["-b", &format!("{}:/in/data", data.display())], "pwd");
    c.current_dir(data.join("sub"));
    assert_eq!(ok(&c.output().unwrap()), "/in/data/sub\n");
    let mut c = env.cmd(
        &["-b", &format!("{}:/in/data", data.display()), "-w", "/bin"],
        "pwd",
    );
    c.current_dir(data.join("sub"));
    assert_eq!(ok(&c.output().unwrap()), "/bin\n", "-w wins");
    // Site config: an optional missing source is skipped, a present one bound,
    // and cache_dir used.
    let site = env.site(&format!(
        "cache_dir = \"{}\"\n[[bind]]\nsource = \"/no/such/fs\"\noptional = true\n[[bind]]\nsource = \"{}\"\ndestination = \"/site\"\nreadonly = true\n",
        env.dir.join("site-cache").display(),
        data.display()
    ));
    let mut c = env.cmd(&[], "cat /site/f");
    c.env("HPCC_CONFIG", &site).env_remove("HPCC_CACHE_DIR");
    assert_eq!(ok(&c.output().unwrap()), "hello\n");
    assert!(
        env.dir.join("site-cache/images").is_dir(),
        "the site's cache_dir was used"
    );
    let bad = env.site("[[bind]]\nsource = \"/no/such/fs\"\n");
    let mut c = env.cmd(&[], "true");
    c.env("HPCC_CONFIG", &bad);
    fails_with(&c.output().unwrap(), "/no/such/fs");
    let typo = env.site("cache_dri = \"/x\"\n");
    let mut c = env.cmd(&[], "true");
    c.env("HPCC_CONFIG", &typo);
    fails_with(&c.output().unwrap(), "cache_dri");
    fails_with(&env.run(&["-b", "/no/such/src"], "true"), "/no/such/src");
}

/// A stand-in NVIDIA driver library with the right soname, in an ld.so
/// cache of the test's own.
fn stand_in_ld_cache(dir: &Path) -> PathBuf {
    let libdir = dir.join("driver");
    std::fs::create_dir_all(&libdir).unwrap();
    std::fs::write(dir.join("stub.c"), "int nvmlInit(void) { return 0; }\n").unwrap();
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1", "-o"])
        .arg(libdir.join("libnvidia-ml.so.1"))
        .arg(dir.join("stub.c"))
        .status()
        .expect("gcc");
    assert!(st.success());
    std::fs::write(dir.join("ld.so.conf"), format!("{}\n", libdir.display())).unwrap();
    let cache = dir.join("ld.so.cache");
    // ldconfig is in /sbin, which is not on a user's PATH.
    let st = Command::new("/sbin/ldconfig")
        .arg("-C")
        .arg(&cache)
        .arg("-f")
        .arg(dir.join("ld.so.conf"))
        .status()
        .expect("ldconfig");
    assert!(st.success());
    cache
}

#[test]
fn stand_in_devices_and_driver_libraries() {
    let env = Env::new("devices");
    let dev = env.dir.join("dev");
    std::fs::create_dir_all(dev.join("infiniband")).unwrap();
    for n in [
        "nvidia0",
        "nvidia1",
        "nvidiactl",
        "nvidia-uvm",
        "infiniband/uverbs0",
    ] {
        std::fs::write(dev.join(n), "").unwrap();
    }
    let cache = stand_in_ld_cache(&env.dir);
    let site = env.site(&format!(
        "dev_dir = \"{}\"\nld_cache = \"{}\"\n",
        dev.display(),
        cache.display()
    ));
    let look = "ls /dev | grep -E 'nvidia|infiniband' | tr '\\n' ' '; echo; ls /dev/infiniband; ls /.hpcc/gpu/lib 2>/dev/null; echo ${LD_LIBRARY_PATH%%:*} ${CUDA_VISIBLE_DEVICES:-unset}";
    let mut c = env.cmd(&[], look);
    c.env("HPCC_CONFIG", &site)
        .env_remove("NVIDIA_VISIBLE_DEVICES")
        .env_remove("CUDA_VISIBLE_DEVICES");
    assert_eq!(
        ok(&c.output().unwrap()),
        "infiniband nvidia-uvm nvidia0 nvidia1 nvidiactl \nuverbs0\nlibnvidia-ml.so.1\n/.hpcc/gpu/lib unset\n"
    );
    let mut c = env.cmd(
        &["--gpus", "1"],
        "ls /dev | grep -E '^nvidia[0-9]' | tr '\\n' ' '; echo $CUDA_VISIBLE_DEVICES",
    );
    c.env("HPCC_CONFIG", &site);
    assert_eq!(ok(&c.output().unwrap()), "nvidia1 0\n");
    let mut c = env.cmd(
        &[],
        "ls /dev | grep -c nvidia; ls /.hpcc 2>/dev/null | wc -l",
    );
    c.env("HPCC_CONFIG", &site)
        .env("NVIDIA_VISIBLE_DEVICES", "none");
    let o = c.output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "0\n0\n",
        "NVIDIA_VISIBLE_DEVICES=none hides the GPUs"
    );
    let mut c = env.cmd(&["--gpus", "7"], "true");
    c.env("HPCC_CONFIG", &site);
    fails_with(&c.output().unwrap(), "nvidia7");
    // Without stand-ins, no GPU appears and the run still works.
    let empty = env.dir.join("emptydev");
    std::fs::create_dir_all(&empty).unwrap();
    let site = env.site(&format!("dev_dir = \"{}\"\n", empty.display()));
    let mut c = env.cmd(&[], "ls /dev | grep -c nvidia || true");
    c.env("HPCC_CONFIG", &site);
    assert_eq!(ok(&c.output().unwrap()), "0\n");
}

#[test]
fn inherited_fds_pass_through_and_ours_do_not_leak() {
    let env = Env::new("fds");
    let marker = env.dir.join("pmi");
    std::fs::write(&marker, "").unwrap();
    let f = std::fs::File::open(&marker).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut c = env.cmd(
        &[],
        "ls /proc/self/fd | sort -n | tr '\\n' ' '; readlink /proc/self/fd/7",
    );
    // SAFETY: dup2 in the child between fork and exec, on fds we own.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Only 0-2 and 7 reach hpcc, whatever the test runner leaked.
            for fd in (3..7).chain(8..1024) {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let out = ok(&c.output().unwrap());
    // 0-2, the inherited 7, and the fd ls opened for /proc/self/fd.
    assert_eq!(out, format!("0 1 2 3 7 {}\n", marker.display()));
}

#[test]
fn fakeroot_and_record() {
    let env = Env::new("fakeroot");
    if uid() == 0 {
        fails_with(&env.run(&["--fakeroot"], "id -u"), "--fakeroot");
    } else if runtime_tests::forced_underlay() {
        // Without an overlay the image's files cannot be made writable:
        // --fakeroot still maps the user to root, and --writable-tmpfs is
        // refused in one line.
        assert_eq!(ok(&env.run(&["--fakeroot"], "id -u")), "0\n");
        fails_with(
            &env.run(&["--fakeroot", "--writable-tmpfs"], "true"),
            "--writable-tmpfs needs an overlay",
        );
    } else {
        assert_eq!(
            ok(&env.run(
                &["--fakeroot", "--writable-tmpfs"],
                "id -u; touch /installed && echo ok"
            )),
            "0\nok\n"
        );
    }
    let rec = env.dir.join("record.json");
    ok(&env.run(&["--record", rec.to_str().unwrap()], "true"));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rec).unwrap()).unwrap();
    assert!(r["image"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(r["image"]["layers"].as_array().unwrap().len(), 1);
    assert!(!r["host"]["kernel"].as_str().unwrap().is_empty());
    assert!(r["envKeys"].as_array().unwrap().iter().any(|k| k == "PATH"));
    assert!(r["binds"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["destination"] == "/tmp"));
    assert_eq!(r["hpcc"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_join_with_no_answer_times_out_clearly_and_a_dead_builder_is_replaced() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let env = Env::new("jointimeout");
    let tag = format!("t{}", std::process::id());
    // Learn the group's socket name from a run that leads the group alone.
    let mut c = Command::new(runtime_tests::hpcc_bin());
    c.args([
        "--debug",
        "run",
        "--join",
        "--join-tag",
        &tag,
        "--join-timeout",
        "1",
    ])
    .arg(&env.image)
    .args(["--", "true"])
    .env("HPCC_CACHE_DIR", env.dir.join("cache"))
    .current_dir("/");
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let name = err
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no join socket in --debug output: {err}"))
        .to_string();
    // A "builder" that took the name and then hung: followers must give up
    // with an error that says so, within their timeout.
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let hung = loop {
        match UnixListener::bind_addr(&addr) {
            Ok(l) => break l,
            // The first run's holder keeps the name until its idle timeout.
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(e) => panic!("binding {name}: {e}"),
        }
    };
    let o = env.run(
        &["--join", "--join-tag", &tag, "--join-timeout", "2"],
        "true",
    );
    fails_with(&o, "did not answer within 2s");
    // The hung builder dies: the name is free again and the next rank leads.
    drop(hung);
    assert_eq!(
        ok(&env.run(
            &["--join", "--join-tag", &tag, "--join-timeout", "1"],
            "echo led"
        )),
        "led\n"
    );
}

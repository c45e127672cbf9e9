#!/usr/bin/env python3
"""Writes the seed inputs under fuzz/corpus/<target>/ (small, real shapes).
Run from anywhere: python3 fuzz/seeds/make_seeds.py"""
import io, json, os, struct, tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")

def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# ---- spec_config: default.json/rootless.json come from `hpcc spec`; add a
# config with the less common sections.
spec = {
    "ociVersion": "1.2.0",
    "process": {"terminal": False, "user": {"uid": 0, "gid": 0},
                "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/",
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
                "noNewPrivileges": True},
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "c",
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "size=64k"]}],
    "linux": {
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                       {"type": "uts"}, {"type": "network"}, {"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"},
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]},
        "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
        "resources": {"memory": {"limit": 1048576}, "pids": {"limit": 10}},
    },
    "hooks": {"prestart": [{"path": "/bin/true", "timeout": 1}]},
}
put("spec_config", "sections.json", json.dumps(spec, indent=1))

# ---- image_manifest: see fuzz_targets/image_manifest.rs for the format.
layer = b"layer bytes"
oci_manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "@@2", "size": 10},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "@@3", "size": 11}]})
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "true"],
                                "WorkingDir": "/", "User": "1000:1000"},
                     "rootfs": {"type": "layers", "diff_ids": ["@@3"]}})
index = json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@@1", "size": 1,
     "annotations": {"org.opencontainers.image.ref.name": "busybox:latest"}}]})
oci = "\n--\n".join([index, oci_manifest, config, layer.decode()])
put("image_manifest", "oci-layout", oci)
put("image_manifest", "oci-archive", "@tar\n@want:latest\n" + oci)
multi_index = json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "@@1", "size": 1}]})
platforms = json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@@2", "size": 1,
     "platform": {"architecture": "arm64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@@2", "size": 1,
     "platform": {"architecture": "amd64", "os": "linux"}}]})
m2 = oci_manifest.replace("@@3", "@@4").replace("@@2", "@@3")
c2 = config.replace("@@3", "@@4")
put("image_manifest", "multi-platform", "\n--\n".join([multi_index, platforms, m2, c2, "x"]))
docker = json.dumps([{"Config": "blobs/sha256/##1", "RepoTags": ["localhost/app:v1"],
                      "Layers": ["2", "3"]},
                     {"Config": "1", "RepoTags": None, "Layers": []}])
dconfig = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [
                          "sha256:" + "a" * 64, "sha256:" + "b" * 64]}})
put("image_manifest", "docker-archive", "@tar\n@want:app:v1\n" + "\n--\n".join([docker, dconfig, "l1", "l2"]))
put("image_manifest", "docker-layout", "@want:1\n" + "\n--\n".join([docker, dconfig, "l1", "l2"]))

# ---- layer_apply: small layer tars.
def tar_of(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            data = None
            if kind == "file":
                data = e[2]
                ti.size = len(data)
                ti.mode = e[3] if len(e) > 3 else 0o644
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = e[2] if len(e) > 2 else 0o755
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e[2]
            elif kind == "hard":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e[2]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif kind == "chr":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = 1, 3
            elif kind == "pax":
                data = e[2]
                ti.size = len(data)
                ti.pax_headers = e[3]
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    # keep the end-of-archive blocks short: tarfile pads to 10 KiB records
    raw = buf.getvalue()
    end = len(raw)
    while end >= 512 and raw[end - 512:end] == b"\0" * 512:
        end -= 512
    return raw[:end] + b"\0" * 1024

put("layer_apply", "basic.tar", tar_of([
    ("dir", "etc/"), ("file", "etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    ("file", "bin/sh", b"\x7fELF", 0o4755), ("sym", "bin/ls", "sh"),
    ("hard", "bin/ash", "bin/sh"), ("dir", "ro/", 0o555), ("file", "ro/f", b"x"),
    ("fifo", "run/fifo"), ("chr", "dev/null")]))
put("layer_apply", "whiteouts.tar", tar_of([
    ("dir", "a/"), ("file", "a/keep", b"k"), ("file", "a/.wh.gone", b""),
    ("file", "a/.wh..wh..opq", b""), ("file", ".wh.etc", b""), ("file", "b/.wh..wh..opq", b"")]))
put("layer_apply", "escapes.tar", tar_of([
    ("sym", "up", ".."), ("file", "up/sentinel", b"pwned"),
    ("sym", "abs", "/"), ("file", "abs/tmp/x", b"pwned"),
    ("sym", "rel", "../../sentinel"), ("file", "rel", b"pwned"),
    ("sym", "out", "../outside"), ("file", "out/file", b"pwned"), ("file", "out/.wh.file", b""),
    ("hard", "h", "up/sentinel"), ("sym", "loop", "loop"), ("file", "loop/x", b"")]))
put("layer_apply", "replace.tar", tar_of([
    ("file", "x", b"file"), ("dir", "x/"), ("file", "x/y", b"y"), ("sym", "x", "y"),
    ("dir", "d/"), ("file", "d", b"now a file"), ("file", "./", b""), ("dir", "./")]))
put("layer_apply", "pax.tar", tar_of([
    ("pax", "p/" + "long" * 40, b"data", {"SCHILY.xattr.user.test": "v", "mtime": "1.5"})],
    fmt=tarfile.PAX_FORMAT))

def sparse_bomb():
    """A GNU sparse entry: 512 data bytes after a 1 GiB hole (2 KiB in all)."""
    h = bytearray(512)
    def field(off, val):
        h[off:off + len(val)] = val
    octal = lambda n, width: (b"%0*o" % (width - 1, n)) + b"\0"
    field(0, b"bomb")
    field(100, octal(0o644, 8)); field(108, octal(0, 8)); field(116, octal(0, 8))
    field(124, octal(512, 12)); field(136, octal(0, 12))
    h[156] = ord("S")
    field(257, b"ustar  \0")
    field(386, octal(1 << 30, 12)); field(398, octal(512, 12))   # sparse[0]: offset, numbytes
    field(483, octal((1 << 30) + 512, 12))                       # realsize
    field(148, b"        ")
    field(148, b"%06o\0 " % sum(h))
    return bytes(h) + b"A" * 512 + b"\0" * 1024
put("layer_apply", "sparse-bomb.tar", sparse_bomb())

# ---- seccomp: an allow-list shaped like Docker's default, and a deny list.
allow = ["accept", "accept4", "access", "arch_prctl", "bind", "brk", "capget", "chdir", "chmod",
         "clock_gettime", "close", "connect", "dup", "dup2", "epoll_wait", "execve", "exit",
         "exit_group", "fcntl", "fstat", "futex", "getdents64", "getpid", "getppid", "ioctl",
         "lseek", "mmap", "mprotect", "munmap", "newfstatat", "openat", "pipe2", "read",
         "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "set_tid_address", "wait4", "write"]
docker_like = {
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": allow, "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"},
                  {"index": 1, "value": 3, "op": "SCMP_CMP_LT"}]},
        {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["kexec_load"], "action": "SCMP_ACT_TRAP"},
        {"names": ["syslog"], "action": "SCMP_ACT_LOG"},
        {"names": ["acct"], "action": "SCMP_ACT_TRACE", "errnoRet": 5},
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_KILL"},
    ]}
put("seccomp", "docker-like.json", json.dumps(docker_like))
put("seccomp", "deny-list.json", json.dumps({
    "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                 {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"},
                 {"names": ["write"], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": 2, "value": 4096, "op": "SCMP_CMP_GE"},
                           {"index": 0, "value": 2, "op": "SCMP_CMP_LE"}]},
                 {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_GT"}]}]}))
put("seccomp", "notify.json", json.dumps({"defaultAction": "SCMP_ACT_NOTIFY"}))

# ---- signals_idmap: even first byte = signal, odd = id maps.
for i, s in enumerate(["TERM", "SIGKILL", "9", "sigusr1", " hup ", "SIGRTMIN", "-1", "0", "31"]):
    put("signals_idmap", f"signal-{i}", b"\0" + s.encode())
def ids(own, priv, body):
    return b"\1" + struct.pack("<I", own) + bytes([priv]) + body
put("signals_idmap", "idmap-self", ids(1000, 0, json.dumps(
    [{"containerID": 0, "hostID": 1000, "size": 1}]).encode()))
put("signals_idmap", "idmap-subuid", ids(1000, 0, json.dumps(
    [{"containerID": 0, "hostID": 1000, "size": 1},
     {"containerID": 1, "hostID": 100000, "size": 65536}]).encode()))
put("signals_idmap", "idmap-root", ids(0, 1, json.dumps(
    [{"containerID": 0, "hostID": 0, "size": 4294967295}]).encode()))
put("signals_idmap", "idmap-raw", ids(1000, 0, struct.pack("<III", 0, 1000, 1) + struct.pack("<III", 4294967295, 1, 2)))

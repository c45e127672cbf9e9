#!/bin/sh
# The guest suite: runs inside a VM guest (a Debian kernel with systemd
# and cgroup v2), as root, from the payload disk the host attached
# (/payload: hpcc, busybox.tar, mpi.tar, this script). Prints one TAP-like
# line per check ("ok N - ..." or "not ok N - ... : why") and a closing
# count; the host (run-guest.sh) reads them back.
set -u
P=/payload
HPCC=/usr/local/bin/hpcc
install -m 0755 "$P/hpcc" "$HPCC"
USER_NAME=hpcctest
USER_UID=$(id -u "$USER_NAME")
W=$(mktemp -d /tmp/guest.XXXXXX)
chmod 755 "$W"
cp "$P/busybox.tar" "$P/mpi.tar" "$W/"
chmod 644 "$W"/*.tar
n=0 pass=0 fail=0 skip=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1: $(echo "$2" | tr '\n' ' ' | cut -c1-600)"; }
skipped() { n=$((n + 1)); skip=$((skip + 1)); echo "ok $n - $1 # skip $2"; }
# check DESCRIPTION EXPECTED_SUBSTRING COMMAND...: passes when the command
# succeeds and its output contains the expected text.
check() {
    desc=$1 want=$2
    shift 2
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" = 0 ] && printf '%s' "$out" | grep -qF -- "$want"; then ok "$desc"; else notok "$desc" "rc=$rc want '$want': $out"; fi
}
# As the lingering user, with Debian's user PATH and its systemd session.
as_user() {
    setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups \
        env -i HOME="/home/$USER_NAME" USER="$USER_NAME" PATH=/usr/local/bin:/usr/bin:/bin \
        XDG_RUNTIME_DIR="/run/user/$USER_UID" DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$USER_UID/bus" \
        "$@"
}
echo "# guest: $(uname -r), cgroup $(stat -fc %T /sys/fs/cgroup), systemd $(systemctl --version | head -1 | cut -d' ' -f2)"

# --- image mode -------------------------------------------------------------
check "image mode as root" "uid=0" "$HPCC" run -q "$W/busybox.tar" -- id
check "image mode as root reports its root method" "image root:" "$HPCC" --debug run -q "$W/busybox.tar" -- true
check "image mode as a user" "uid=$USER_UID" as_user "$HPCC" run -q "$W/busybox.tar" -- id
out=$(as_user "$HPCC" --debug run -q "$W/busybox.tar" -- true 2>&1)
case $(uname -r) in
5.10.*) want="using an underlay" ;;
# A read-only root: the image under its skeleton, one read-only overlay.
*) want="image root: read-only overlay of" ;;
esac
if printf '%s' "$out" | grep -qF "$want"; then ok "image mode as a user uses the expected root ($want)"; else notok "image mode as a user uses the expected root ($want)" "$out"; fi
check "the cached image stays read-only (user)" "Read-only file system" as_user sh -c "'$HPCC' run -q '$W/busybox.tar' -- touch /x 2>&1; true"
check "a bind onto a path the image lacks (user)" "bound" as_user sh -c "mkdir -p \$HOME/d && echo bound > \$HOME/d/f && '$HPCC' run -q -b \$HOME/d:/opt/new/d '$W/busybox.tar' -- cat /opt/new/d/f"
case $(uname -r) in
5.10.*)
    # No overlay for a user here: one clear line instead.
    check "--writable-tmpfs is refused in one line without overlayfs (user)" "needs an overlay of the image" \
        as_user sh -c "'$HPCC' run -q --writable-tmpfs '$W/busybox.tar' -- true 2>&1; true"
    check "recursive read-only /sys without mount_setattr (root)" "mount_setattr is not available" \
        "$HPCC" --debug run -q "$W/busybox.tar" -- true
    ;;
*) check "--writable-tmpfs (user)" "written" as_user sh -c "'$HPCC' run -q --writable-tmpfs '$W/busybox.tar' -- sh -c 'echo written > /x && cat /x' 2>&1" ;;
esac
check "--writable-tmpfs (root)" "written" sh -c "'$HPCC' run -q --writable-tmpfs '$W/busybox.tar' -- sh -c 'echo written > /x && cat /x' 2>&1"
check "the MPI image as root" "hello from root" "$HPCC" run -q "$W/mpi.tar" -- sh -c 'echo hello from root'
check "the MPI image as a user" "hello from a user" as_user "$HPCC" run -q "$W/mpi.tar" -- sh -c 'echo hello from a user'
check "root without HOME finds a cache" "uid=0" env -u HOME "$HPCC" run -q "$W/busybox.tar" -- id

# --- a 2-rank Open MPI job, joined in one container ---------------------------
out=$(as_user mpirun -np 2 "$HPCC" run "$W/mpi.tar" -- pingpong 2>&1)
rc=$?
if [ "$rc" = 0 ] && printf '%s' "$out" | grep -q 'size=4194304 bandwidth' &&
    printf '%s' "$out" | grep -q 'done ranks=2' && ! printf '%s' "$out" | grep -q 'CMA is not available'; then
    ok "2 Open MPI ranks pass 4 MiB messages, no CMA warning"
else
    notok "2 Open MPI ranks pass 4 MiB messages, no CMA warning" "rc=$rc $out"
fi
out=$(as_user mpirun -np 2 "$HPCC" run "$W/mpi.tar" -- readlink /proc/self/ns/mnt 2>&1)
if [ "$(printf '%s\n' "$out" | grep -c '^mnt:')" = 2 ] && [ "$(printf '%s\n' "$out" | grep '^mnt:' | sort -u | wc -l)" = 1 ]; then
    ok "the 2 ranks share one container (one mount namespace)"
else
    notok "the 2 ranks share one container (one mount namespace)" "$out"
fi

# --- OCI lifecycle on cgroup v2 ------------------------------------------------
B=$W/bundle
mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/sys" "$B/rootfs/dev" "$B/rootfs/tmp"
cp /bin/busybox "$B/rootfs/bin/busybox"
for a in sh cat sleep echo; do ln -s busybox "$B/rootfs/bin/$a"; done
limits='{"memory":{"limit":67108864},"pids":{"limit":32},"cpu":{"quota":50000,"period":100000}}'
bundle() { # CGROUPS_PATH ARGS_JSON
    cat >"$B/config.json" <<JSON
{"ociVersion": "1.0.2",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": $2,
             "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": true},
 "root": {"path": "rootfs", "readonly": true},
 "hostname": "guest",
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}],
 "linux": {"resources": $limits, "cgroupsPath": "$1",
           "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}]}}
JSON
}
bundle "/hpcc-guest/limits" '["cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cpu.max"]'
out=$(cd "$B" && "$HPCC" run limits 2>&1)
if printf '%s' "$out" | grep -q '^67108864$' && printf '%s' "$out" | grep -q '^32$' && printf '%s' "$out" | grep -q '^50000 100000$'; then
    ok "OCI run with memory, pids and cpu limits on cgroup v2"
else
    notok "OCI run with memory, pids and cpu limits on cgroup v2" "$out"
fi
bundle "system.slice:hpcc:guest" '["cat", "/sys/fs/cgroup/memory.max"]'
out=$(cd "$B" && "$HPCC" --systemd-cgroup run sysd 2>&1)
if printf '%s' "$out" | grep -q '^67108864$'; then ok "--systemd-cgroup puts the container in a systemd scope with its limits"; else notok "--systemd-cgroup puts the container in a systemd scope with its limits" "$out"; fi
bundle "/hpcc-guest/pause" '["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"]'
R=$W/state
if (cd "$B" && "$HPCC" --root "$R" run -d pz >/dev/null 2>&1); then
    sleep 2
    "$HPCC" --root "$R" pause pz
    frozen=$(cat /sys/fs/cgroup/hpcc-guest/pause/cgroup.freeze 2>&1)
    st=$("$HPCC" --root "$R" state pz 2>&1 | grep -o '"status": *"[a-z]*"')
    "$HPCC" --root "$R" resume pz
    thawed=$(cat /sys/fs/cgroup/hpcc-guest/pause/cgroup.freeze 2>&1)
    if [ "$frozen" = 1 ] && [ "$thawed" = 0 ] && printf '%s' "$st" | grep -q paused; then
        ok "pause and resume through cgroup.freeze"
    else
        notok "pause and resume through cgroup.freeze" "freeze=$frozen state=$st after=$thawed"
    fi
    "$HPCC" --root "$R" delete --force pz >/dev/null 2>&1
else
    notok "pause and resume through cgroup.freeze" "run -d failed"
fi

# --- rootless podman with --memory, on the user's delegated cgroup -----------------
if command -v podman >/dev/null; then
    PC=$W/podman
    mkdir -p "$PC" && chown "$USER_NAME:" "$PC"
    cat >"$PC/containers.conf" <<CONF
[containers]
netns = "none"
[engine]
runtime = "hpcc"
[engine.runtimes]
hpcc = ["$HPCC"]
CONF
    cat >"$PC/storage.conf" <<CONF
[storage]
driver = "vfs"
runroot = "/run/user/$USER_UID/podman-guest"
graphroot = "$PC/storage"
CONF
    chown "$USER_NAME:" "$PC"/*.conf
    pod() { as_user env CONTAINERS_CONF="$PC/containers.conf" CONTAINERS_STORAGE_CONF="$PC/storage.conf" podman "$@"; }
    if pod load -i "$W/busybox.tar" >/dev/null 2>&1; then
        check "rootless podman --memory on a delegated cgroup (systemd user@$USER_UID)" "67108864" \
            pod run --rm --memory 64m hpcc-busybox:latest cat /sys/fs/cgroup/memory.max
    else
        notok "rootless podman --memory on a delegated cgroup" "$(pod load -i "$W/busybox.tar" 2>&1)"
    fi
else
    notok "rootless podman --memory on a delegated cgroup" "podman is not installed in the guest"
fi

echo "guest: $pass passed, $fail failed, $skip skipped"
rm -rf "$W"

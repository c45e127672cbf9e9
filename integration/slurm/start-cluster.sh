#!/bin/sh
# Starts a real one-node Slurm cluster (munged, slurmctld, slurmd) whose
# state, sockets, logs and PID files all live under DIR, so tests can bring
# one up and tear it down without touching /etc, /run or /var.
#
# usage: start-cluster.sh DIR [--nodes N [--share PATH]...]
#   (as root; DIR must exist, ideally empty)
# Then:  . DIR/env                 (sets SLURM_CONF)
# Stop:  stop-cluster.sh DIR
#
# Without --nodes: one node, the host itself, on 127.0.0.1.
# With --nodes N: N simulated nodes n1..nN (nodes.sh), each with its own
# network, hostname and node-local /tmp, /var/tmp, /dev/shm, /run and Slurm
# spool; slurmctld stays on the host (the login node). --share keeps a
# path under /tmp visible on every node, as a parallel filesystem is; DIR
# always is. Then DIR/env also sets HPCC_CONFIG (a site config whose
# cache_dir is node-local and which binds DIR/shared at /shared),
# CLUSTER_NODES, CLUSTER_HOSTFILE and CLUSTER_RSH (Open MPI's rsh agent).
#
# Works without systemd or D-Bus: every daemon is started by hand, and no
# cgroup plugin is used (the host cgroup layout is not something to rely on).
set -eu

usage() {
    echo "usage: $0 DIR [--nodes N [--share PATH]...]   (DIR: an existing directory)" >&2
    exit 2
}
[ "$#" -ge 1 ] && [ -d "$1" ] || usage
ARG_DIR=$1
shift
NODES=0
SHARES=""
while [ "$#" -gt 0 ]; do
    case "$1" in
    --nodes) [ "$#" -ge 2 ] || usage; NODES=$2; shift 2 ;;
    --share) [ "$#" -ge 2 ] || usage; SHARES="$SHARES $(cd "$2" && pwd -P)"; shift 2 ;;
    *) usage ;;
    esac
done
case "$NODES" in ''|*[!0-9]*) usage ;; esac
if [ "$(id -u)" -ne 0 ]; then
    echo "start-cluster.sh: must run as root (slurmd starts jobs as other users)" >&2
    exit 2
fi
# Absolute and symlink-free: munged checks every directory up the path, and
# the paths end up in slurm.conf, read from other working directories.
DIR=$(cd "$ARG_DIR" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)

# A second start in a live DIR would fight over its sockets, and the cleanup
# in die() would then take the running cluster down too: refuse up front.
for d in munged slurmctld slurmd; do
    pid=$(cat "$DIR/$d.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$d" ]; then
        echo "start-cluster.sh: $d (pid $pid) is already running for $DIR; run stop-cluster.sh first" >&2
        exit 1
    fi
done

if [ -f "$DIR/net" ]; then
    echo "start-cluster.sh: the simulated nodes of an earlier start in $DIR are still up; run stop-cluster.sh first" >&2
    exit 1
fi

# One line saying what failed, the end of the log that says why, then undo
# whatever was already started so a failed start leaves nothing running.
die() {
    echo "start-cluster.sh: $1" >&2
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        echo "--- last lines of $2:" >&2
        tail -n 20 "$2" >&2
    fi
    "$HERE/stop-cluster.sh" "$DIR" >/dev/null 2>&1 || true
    exit 1
}

# wait_for SECONDS CMD...: polls CMD every half second; fails when time is up.
wait_for() {
    n=$(($1 * 2)); shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.5
    done
}

# A TCP port nothing listens on now. Random, so that two clusters started
# at the same time (parallel CI jobs) do not race for the same one, and
# below the kernel's ephemeral range, where the source port of any open
# connection would make bind() fail though nothing listens.
free_port() {
    local not=${1:-} low range
    # Not `read <FILE`: dash reads one byte at a time, and a sysctl file
    # answers a read at a non-zero offset with end-of-file.
    range=$(cat /proc/sys/net/ipv4/ip_local_port_range)
    low=${range%%[!0-9]*}
    [ "$low" -gt 11024 ] || die "ip_local_port_range starts at $low: no room below it for the cluster's ports"
    while :; do
        p=$(( $(od -An -N2 -tu2 /dev/urandom) % (low - 10000) + 10000 ))
        [ "$p" != "$not" ] || continue
        [ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return; }
    done
}

for cmd in munged mungekey slurmctld slurmd sinfo scontrol ss; do
    command -v "$cmd" >/dev/null || die "missing $cmd (apt-get install munge slurm-wlm iproute2)"
done
if [ "$NODES" -gt 0 ]; then
    for cmd in ip nsenter unshare gcc; do
        command -v "$cmd" >/dev/null || die "missing $cmd (apt-get install iproute2 util-linux gcc)"
    done
    . "$HERE/nodes.sh"
fi

HOST=$(hostname -s)
# The rest of the world (unprivileged srun clients, job steps running as the
# submitting user) must be able to walk into DIR to read slurm.conf and reach
# the munge socket; mktemp -d makes it 0700.
chmod 0755 "$DIR"
mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/tmp"
# munged refuses a socket/key directory that group or other can write to.
chmod 0755 "$DIR/munge"
chmod 0700 "$DIR/state" "$DIR/spool"
# TmpFS: PMIx puts per-job client directories here; jobs run as their users.
chmod 1777 "$DIR/tmp"

# --- munge -------------------------------------------------------------
# munged runs as root here, so the key must be root's and unreadable by others.
SOCK=$DIR/munge/munge.socket.2
if [ ! -f "$DIR/munge/munge.key" ]; then
    mungekey --create --keyfile="$DIR/munge/munge.key" >/dev/null 2>&1 ||
        die "mungekey could not create $DIR/munge/munge.key"
fi
chown root:root "$DIR/munge/munge.key"
chmod 0400 "$DIR/munge/munge.key"
# --force: a socket left by a killed earlier run in this DIR would block it.
munged --force --socket="$SOCK" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" ||
    die "munged did not start" "$DIR/log/munged.log"
wait_for 10 test -S "$SOCK" || die "munged did not create $SOCK" "$DIR/log/munged.log"
# Prove the socket works before Slurm depends on it.
if command -v munge >/dev/null; then
    munge -n --socket="$SOCK" | unmunge --socket="$SOCK" >/dev/null 2>&1 ||
        die "munge credential round trip failed on $SOCK" "$DIR/log/munged.log"
fi

# --- nodes -------------------------------------------------------------
CTLD_ADDR=127.0.0.1
if [ "$NODES" -gt 0 ]; then
    mkdir -p "$DIR/bin" "$DIR/nodes" "$DIR/shared"
    chmod 0755 "$DIR/bin" "$DIR/nodes"
    # The parallel filesystem: every node sees it, every user may write.
    chmod 1777 "$DIR/shared"
    gcc -O2 -o "$DIR/bin/node-rshd" "$HERE/../cluster/node-rshd.c" &&
        gcc -O2 -o "$DIR/bin/node-rsh" "$HERE/../cluster/node-rsh.c" ||
        die "could not build node-rshd and node-rsh"
    make_bridge "$DIR" || die "could not make the cluster's bridge"
    . "$DIR/net"
    CTLD_ADDR=$prefix.1
    : >"$DIR/hostfile"
    i=1
    while [ "$i" -le "$NODES" ]; do
        # shellcheck disable=SC2086
        make_node "$DIR" "n$i" "$i" $SHARES || die "could not make node n$i"
        echo "$(cat "$DIR/nodes/n$i/addr") slots=2" >>"$DIR/hostfile"
        i=$((i + 1))
    done
    chmod 0644 "$DIR/hostfile"
fi

# --- slurm.conf --------------------------------------------------------
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port "$CTLD_PORT")
# The node line exactly as this machine reports itself; a node configured
# with more CPUs or memory than slurmd finds is drained as invalid.
NODE=$(slurmd -C | head -n 1)
case "$NODE" in
NodeName=*) ;;
*) die "slurmd -C printed no NodeName line: $NODE" ;;
esac
if [ "$NODES" -gt 0 ]; then
    # Every simulated node claims 16 CPUs (config_overrides below), so a
    # step of 3 x 16 ranks fits on this 2-core machine, as --oversubscribe
    # does for mpirun.
    NODE=""
    i=1
    while [ "$i" -le "$NODES" ]; do
        NODE="${NODE}NodeName=n$i NodeHostname=n$i NodeAddr=$(cat "$DIR/nodes/n$i/addr") CPUs=16 RealMemory=1024 State=UNKNOWN
"
        i=$((i + 1))
    done
    NODE_EXTRA="SlurmdParameters=config_overrides
MpiDefault=none"
    SLURMD_PID=$DIR/spool/slurmd.pid
    SLURMD_LOG=$DIR/spool/slurmd.log
else
    NODE="$NODE NodeAddr=127.0.0.1 State=UNKNOWN"
    NODE_EXTRA="MpiDefault=none"
    SLURMD_PID=$DIR/slurmd.pid
    SLURMD_LOG=$DIR/log/slurmd.log
fi

cat >"$DIR/slurm.conf" <<EOF
# Generated by start-cluster.sh for a throwaway test cluster.
ClusterName=hpcctest
SlurmctldHost=$HOST($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK

StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
TmpFS=$DIR/tmp
PlugStackConfig=$DIR/plugstack.conf
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups: there is no systemd to delegate a cgroup subtree, and the
# host may mix v1 and v2.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
$NODE_EXTRA
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Fast turnaround for tests.
MinJobAge=10
KillWait=5
InactiveLimit=0
# There is no mailer; the default /bin/mail only earns an error in the log.
MailProg=/bin/true

$NODE
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
chmod 0644 "$DIR/slurm.conf"
# An empty plugstack.conf keeps the host's SPANK plugins out of the tests.
: >"$DIR/plugstack.conf"

SLURM_CONF=$DIR/slurm.conf
export SLURM_CONF
printf 'export SLURM_CONF=%s\n' "$SLURM_CONF" >"$DIR/env"
chmod 0644 "$DIR/env"

# --- slurmctld and slurmd ----------------------------------------------
# -i: ignore state from an earlier run in this DIR (fresh cluster each time).
slurmctld -i -f "$SLURM_CONF" || die "slurmctld did not start" "$DIR/log/slurmctld.log"
wait_for 30 scontrol ping || die "slurmctld is not answering on port $CTLD_PORT" "$DIR/log/slurmctld.log"

if [ "$NODES" -eq 0 ]; then
    slurmd -f "$SLURM_CONF" || die "slurmd did not start" "$SLURMD_LOG"
    node_idle() { [ "$(sinfo -h -N -n "$HOST" -o %T)" = idle ]; }
    wait_for 30 node_idle ||
        die "node $HOST is not idle after 30 s (state: $(sinfo -h -N -o %T 2>&1))" "$SLURMD_LOG"
else
    i=1
    while [ "$i" -le "$NODES" ]; do
        in_node "$DIR" "n$i" slurmd -N "n$i" -f "$SLURM_CONF" ||
            die "slurmd did not start on n$i" "$DIR/nodes/n$i/spool/slurmd.log"
        # sshd's stand-in, for mpirun's rsh launcher (node-rshd.c).
        in_node "$DIR" "n$i" sh -c 'setsid "$1" "$2" </dev/null >>"$3" 2>&1 & echo $! >"$4"' \
            rshd "$DIR/bin/node-rshd" "$DIR/nodes/n$i/rsh.sock" "$DIR/nodes/n$i/rshd.log" "$DIR/nodes/n$i/rshd.pid"
        i=$((i + 1))
    done
    all_idle() { [ "$(sinfo -h -N -o %T | sort -u)" = idle ] && [ "$(sinfo -h -N -o %N | wc -l)" -eq "$NODES" ]; }
    wait_for 30 all_idle ||
        die "the nodes are not idle after 30 s (states: $(sinfo -h -N -o '%N=%T' 2>&1 | tr '\n' ' '))" "$DIR/nodes/n1/spool/slurmd.log"
    i=1
    while [ "$i" -le "$NODES" ]; do
        wait_for 10 test -S "$DIR/nodes/n$i/rsh.sock" || die "node-rshd did not start on n$i" "$DIR/nodes/n$i/rshd.log"
        i=$((i + 1))
    done
    # The site config an admin would write for such a cluster: the cache
    # on node-local disk (never the shared filesystem), the shared
    # filesystem bound in at the same place on every node.
    cat >"$DIR/hpcc.toml" <<CONF
cache_dir = "/var/tmp/hpcc-\$USER"
[[bind]]
source = "$DIR/shared"
destination = "/shared"
CONF
    chmod 0644 "$DIR/hpcc.toml"
    {
        printf 'export HPCC_CONFIG=%s\n' "$DIR/hpcc.toml"
        printf 'export CLUSTER_NODES="%s"\n' "$(seq -s ' ' -f 'n%g' 1 "$NODES")"
        printf 'export CLUSTER_HOSTFILE=%s\n' "$DIR/hostfile"
        printf 'export CLUSTER_RSH=%s\n' "$DIR/bin/node-rsh"
        printf 'export CLUSTER_NET=%s.0/24\n' "$prefix"
        printf 'export CLUSTER_DIR=%s\n' "$DIR"
    } >>"$DIR/env"
fi

echo "export SLURM_CONF=$SLURM_CONF"

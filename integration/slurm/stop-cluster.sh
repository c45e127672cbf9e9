#!/bin/sh
# Stops the cluster that start-cluster.sh started in DIR and leaves no
# process of it behind. Safe to run more than once, or on a half-started DIR.
#
# usage: stop-cluster.sh DIR
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
[ -d "$1" ] || exit 0
DIR=$(cd "$1" && pwd -P)

# Cancel jobs while the daemons can still do it cleanly: slurmd exiting
# does not end the slurmstepd processes of running steps.
if [ -f "$DIR/slurm.conf" ] && [ -f "$DIR/slurmctld.pid" ]; then
    SLURM_CONF=$DIR/slurm.conf timeout 10 sh -c \
        'squeue -h -o %i | xargs -r scancel --quiet --full' 2>/dev/null || true
fi

# alive PID NAME: PID is still NAME (the PID file may be stale, and the
# number reused by something that is not ours).
alive() {
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

# stop PID NAME: TERM, up to 10 s to exit, then KILL.
stop() {
    alive "$1" "$2" || return 0
    kill -TERM "$1" 2>/dev/null || true
    n=20
    while alive "$1" "$2" && [ "$n" -gt 0 ]; do sleep 0.5; n=$((n - 1)); done
    if alive "$1" "$2"; then
        kill -KILL "$1" 2>/dev/null || true
        sleep 0.2
    fi
}

# Order: compute node, then controller, then munge (both Slurm daemons
# talk to munged while shutting down).
for nd in "$DIR"/nodes/n*/; do
    [ -d "$nd" ] || continue
    stop "$(cat "$nd/spool/slurmd.pid" 2>/dev/null || true)" slurmd
    stop "$(cat "$nd/rshd.pid" 2>/dev/null || true)" node-rshd
    rm -f "$nd/spool/slurmd.pid" "$nd/rshd.pid"
done
for d in slurmd slurmctld munged; do
    pid=$(cat "$DIR/$d.pid" 2>/dev/null || true)
    stop "$pid" "$d"
    rm -f "$DIR/$d.pid"
done

# Stragglers: slurmstepd (steps that outlived scancel), slurmctld's
# slurmscriptd helper, or daemons whose PID file was never written. They all
# hold a log file under DIR open; matching on open files, never on the
# working directory, spares a caller's shell that sits in DIR.
for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    name=$(cat "$p/comm" 2>/dev/null) || continue
    case "$name" in slurmstepd|slurmscriptd|slurmd|slurmctld|munged|node-rshd) ;; *) continue ;; esac
    if ls -l "$p/fd" 2>/dev/null | grep -qF -- "-> $DIR/"; then
        stop "$pid" "$name"
    fi
done

# Simulated nodes last: their holders keep the namespaces, mounts and veth
# devices, and the bridge goes with them.
if [ -f "$DIR/net" ]; then
    . "$(dirname "$0")/nodes.sh"
    remove_nodes "$DIR"
fi
exit 0

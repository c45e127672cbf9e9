#!/bin/sh
# Fails, saying what, if anything of the cluster in DIR outlived
# stop-cluster.sh: a daemon, a node holder (and with it the node's
# namespaces), a mount under DIR, the bridge or a veth device.
#
# usage: check-stopped.sh DIR
set -eu
DIR=$(cd "${1:?usage: check-stopped.sh DIR}" && pwd -P)
left=""
for p in /proc/[0-9]*; do
    name=$(cat "$p/comm" 2>/dev/null) || continue
    case "$name" in slurmstepd|slurmscriptd|slurmd|slurmctld|munged|node-rshd|sleep) ;; *) continue ;; esac
    # Ours when it has a file under DIR open, or (a node holder) its
    # namespaces' mounts name DIR.
    if ls -l "$p/fd" 2>/dev/null | grep -qF -- "-> $DIR/" ||
        grep -qF " $DIR/" "$p/mountinfo" 2>/dev/null; then
        left="$left ${p#/proc/}($name)"
    fi
done
[ -z "$left" ] || { echo "check-stopped.sh: still running for $DIR:$left" >&2; exit 1; }
if grep -qF " $DIR/" /proc/self/mountinfo; then
    echo "check-stopped.sh: still mounted under $DIR:" >&2
    grep -F " $DIR/" /proc/self/mountinfo >&2
    exit 1
fi
if [ -f "$DIR/net" ]; then
    echo "check-stopped.sh: $DIR/net is still there (the nodes were not removed)" >&2
    exit 1
fi
if [ -f "$DIR/net.gone" ]; then
    bridge=$(sed -n 's/^bridge=//p' "$DIR/net.gone")
    if ip -o link show | grep -Eq ": $bridge(n[0-9]+)?[:@]"; then
        echo "check-stopped.sh: the cluster's bridge $bridge or a veth of it is left:" >&2
        ip -o link show | grep -E ": $bridge" >&2
        exit 1
    fi
fi

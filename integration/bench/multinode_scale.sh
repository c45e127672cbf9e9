#!/usr/bin/env bash
# The figures behind ARCHITECTURE.md's "At scale" section, at the largest
# scale this machine allows: 3 simulated nodes x 16 ranks (start-cluster.sh
# --nodes 3), cold caches, the image on the shared directory. Counts, not
# timings: how often each node opens the image tar, how many hpcc processes
# each node has while the ranks run, and what the job writes to the shared
# filesystem.
# usage: multinode_scale.sh HPCC MPI.tar     (as root)
set -euo pipefail
HPCC=$(realpath "$1") IMG=$(realpath "$2")
HERE=$(cd "$(dirname "$0")/../slurm" && pwd)
W=$(mktemp -d /tmp/hpcc-scale.XXXXXX)
chmod 755 "$W"
trap 'sh "$HERE/stop-cluster.sh" "$W/c"; rm -rf "$W"' EXIT
mkdir "$W/c" "$W/bin"
install -m 755 "$HPCC" "$W/bin/hpcc"
sh "$HERE/start-cluster.sh" "$W/c" --nodes 3 --share "$W" >/dev/null
. "$W/c/env"
cp "$IMG" "$W/c/shared/mpi.tar"
mkdir -m 1777 "$W/c/shared/trace"
before=$(find "$W/c/shared" | sort)
# Every rank under strace (outside its container, on its node), holding
# its container for 3 s so the processes can be counted meanwhile.
srun -N 3 --ntasks-per-node=16 sh -c "strace -f -qq -e trace=open,openat,openat2 -o $W/c/shared/trace/\$SLURM_PROCID $W/bin/hpcc run -q $W/c/shared/mpi.tar -- sleep 3" &
job=$!
sleep 2.5
for n in n1 n2 n3; do
    net=$(readlink "/proc/$(cat "$W/c/nodes/$n/pid")/ns/net")
    procs=0
    for p in $(pgrep -x hpcc); do
        [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$net" ] && procs=$((procs + 1))
    done
    echo "$n: hpcc processes while 16 ranks run: $procs (ranks are sleep 3; a rank's hpcc stays as its parent)"
done
wait "$job"
for n in 0 1 2; do
    opens=0
    for r in $(seq $((n * 16)) $((n * 16 + 15))); do
        c=$(grep -c 'mpi.tar"' "$W/c/shared/trace/$r" || true)
        opens=$((opens + c))
    done
    echo "n$((n + 1)): opens of the image tar by its 16 ranks: $opens"
    echo "n$((n + 1)): unpacked images in its cache: $(ls "$W/c/nodes/n$((n + 1))/var-tmp/hpcc-root/images" | wc -l)"
done
rm -rf "$W/c/shared/trace"
after=$(find "$W/c/shared" | sort)
[ "$before" = "$after" ] && echo "files created on the shared filesystem: 0" ||
    echo "files created on the shared filesystem: $(diff <(echo "$before") <(echo "$after") | grep -c '^>')"

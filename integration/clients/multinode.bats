#!/usr/bin/env bats
# hpcc across nodes: a Slurm 22.05 cluster of three simulated nodes on this
# machine (integration/slurm/start-cluster.sh --nodes 3: each node its own
# network, hostname and node-local /tmp, /var/tmp, /dev/shm, /run and Slurm
# spool), driven by srun --mpi=pmix, sbatch and Open MPI's own launcher
# (mpirun with a host file and node-rsh in place of ssh).
#
# The image tar and the probe program live on the cluster's shared
# directory (the "parallel filesystem", bound at /shared by the cluster's
# site config); each node's hpcc cache is node-local. Every check reads
# what the ranks saw from inside them (integration/cluster/probe.c) or
# looks at each node's cache from outside.
#
# As root the suite starts its own cluster; as a user it uses the one the
# runner (run.sh) started as root in MULTINODE_TEST_DIR.
# rootless: yes

load lib

SLURM_DIR="$BATS_TEST_DIRNAME/../slurm"
CLUSTER_SRC="$BATS_TEST_DIRNAME/../cluster"

setup_file() {
    require_cmd srun slurm-client
    require_cmd mpirun openmpi-bin
    require_cmd mpicc libopenmpi-dev
    if [ "$(id -u)" = 0 ]; then
        require_cmd slurmd slurmd
        require_cmd munged munge
        require_cmd ip iproute2
    fi
    require_mpi_image
    make_work_dir multinode
    # The binary and the image sit in the runner's directory in /tmp:
    # shared, as an install on a parallel filesystem is.
    start_or_use_cluster MULTINODE_TEST_DIR --nodes 3 \
        --share "$(dirname "$HPCC")" --share "$(dirname "$HPCC_MPI_IMAGE")"
    CLUSTER=$(cat "$SUITE_WORK/cluster-dir")
    # This user's corner of the shared filesystem: the image and the
    # program, as a user would keep them on Lustre.
    local shared=$CLUSTER/shared/$(id -un)
    rm -rf "$shared"
    mkdir -p "$shared"
    cp "$HPCC_MPI_IMAGE" "$shared/mpi.tar"
    mpicc -O2 -o "$shared/probe" "$CLUSTER_SRC/probe.c"
}

teardown_file() {
    [ -n "${SUITE_WORK:-}" ] || return 0
    stop_own_cluster
    # The cluster of run.sh outlives us: take this user's files off it.
    local c
    c=$(cat "$SUITE_WORK/cluster-dir" 2>/dev/null) || true
    if [ -n "$c" ] && [ "$(id -u)" != 0 ]; then
        rm -rf "$c/shared/$(id -un)"
        chmod -R u+w "$c"/nodes/n*/var-tmp/hpcc-"$(id -un)"* 2>/dev/null || true
        rm -rf "$c"/nodes/n*/var-tmp/hpcc-"$(id -un)"*
    fi
    remove_work_dir
}

setup() {
    CLUSTER=$(cat "$SUITE_WORK/cluster-dir")
    # shellcheck disable=SC1091
    . "$CLUSTER/env"
    ME=$(id -un)
    SHARED=$CLUSTER/shared/$ME
    IMG=$SHARED/mpi.tar
    PROBE=/shared/$ME/probe
    # A cold, node-local cache of this test's own (the site config's
    # cache_dir is /var/tmp/hpcc-$USER; /var/tmp is node-local).
    CACHE_NAME=hpcc-$ME-t$BATS_TEST_NUMBER
    export HPCC_CACHE_DIR=/var/tmp/$CACHE_NAME
    MPIRUN=(mpirun --hostfile "$CLUSTER_HOSTFILE" --mca plm_rsh_agent "$CLUSTER_RSH"
        --mca oob_tcp_if_include "$CLUSTER_NET" --mca btl_tcp_if_include "$CLUSTER_NET"
        -x HPCC_CONFIG -x HPCC_CACHE_DIR)
    cd "$SHARED"
}

# Open MPI refuses root unless told; harmless for a user.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# node_cache NODE [NAME]: a node's cache directory, seen from the host.
node_cache() {
    echo "$CLUSTER/nodes/$1/var-tmp/${2:-$CACHE_NAME}"
}

# The probe's line for each rank, as "rank host mnt user".
probe_layout() {
    grep '^probe rank=' <<<"$1" | sed -E 's/^probe rank=([0-9]+) host=([^ ]+) mnt=([^ ]+) user=([^ ]+).*/\1 \2 \3 \4/'
}

# assert_per_node OUTPUT NODES PER_NODE: every node ran PER_NODE ranks, all
# in one container (mount and user namespace) per node, and no two nodes
# shared one.
assert_per_node() {
    local layout n
    layout=$(probe_layout "$1")
    assert_eq "$(wc -l <<<"$layout")" $(($2 * $3)) "ranks reporting"
    assert_eq "$(awk '{print $2}' <<<"$layout" | sort -u | wc -l)" "$2" "nodes used"
    for n in $(awk '{print $2}' <<<"$layout" | sort -u); do
        assert_eq "$(awk -v n="$n" '$2 == n' <<<"$layout" | wc -l)" "$3" "ranks on $n"
        assert_eq "$(awk -v n="$n" '$2 == n {print $3}' <<<"$layout" | sort -u | wc -l)" 1 "mount namespaces on $n"
        assert_eq "$(awk -v n="$n" '$2 == n {print $4}' <<<"$layout" | sort -u | wc -l)" 1 "user namespaces on $n"
    done
    assert_eq "$(awk '{print $3}' <<<"$layout" | sort -u | wc -l)" "$2" "mount namespaces in the job"
}

# assert_one_unpack_per_node OUTPUT: each node's cache holds the image once
# and nothing half-made, and the ranks' debug lines say three unpacks.
assert_one_unpack_per_node() {
    assert_eq "$(grep -c 'unpacked image' <<<"$1")" 3 "unpacks in the job"
    local n
    for n in n1 n2 n3; do
        assert_eq "$(ls "$(node_cache $n)/images" | wc -l)" 1 "images in $n's cache"
        assert_eq "$(ls -A "$(node_cache $n)/tmp" | wc -l)" 0 "unpacks left in $n's cache"
    done
}

refute_cma_warning() {
    if [[ "$1" == *"CMA is not available"* ]]; then
        echo "ranks of one node ran in different user namespaces" >&2
        return 1
    fi
}

@test "multinode: srun -N 3 --mpi=pmix: allreduce over 6 ranks, one container and one unpack per node" {
    # The site config's own cache_dir, not this test's: it must be node-local.
    unset HPCC_CACHE_DIR
    CACHE_NAME=hpcc-$ME
    run tmo srun -N 3 --ntasks-per-node=2 --mpi=pmix "$HPCC" --debug run -q "$IMG" -- "$PROBE" 1
    [ "$status" -eq 0 ]
    assert_contains "$output" "probe allreduce sum=21 expected=21 ok"
    assert_per_node "$output" 3 2
    assert_one_unpack_per_node "$output"
    refute_cma_warning "$output"
    # Ranks on different nodes talk over the network: a pair across nodes.
    run tmo srun -N 2 --ntasks-per-node=1 --mpi=pmix "$HPCC" run -q "$IMG" -- pingpong 20
    [ "$status" -eq 0 ]
    assert_contains "$output" "size=4194304 bandwidth_MBps="
    assert_contains "$output" "pingpong done ranks=2"
}

@test "multinode: mpirun --hostfile with an rsh agent: allreduce, one container and one unpack per node" {
    run tmo "${MPIRUN[@]}" -np 6 "$HPCC" --debug run -q "$IMG" -- "$PROBE" 1
    [ "$status" -eq 0 ]
    assert_contains "$output" "probe allreduce sum=21 expected=21 ok"
    assert_per_node "$output" 3 2
    assert_one_unpack_per_node "$output"
    refute_cma_warning "$output"
}

@test "multinode: sbatch -N 3 of a script that calls mpirun and srun" {
    cat >"$SHARED/job.sh" <<JOB
#!/bin/sh
mpirun --mca oob_tcp_if_include $CLUSTER_NET --mca btl_tcp_if_include $CLUSTER_NET "$HPCC" --debug run -q "$IMG" -- "$PROBE" 1
echo "mpirun status \$?"
srun --mpi=pmix "$HPCC" run -q "$IMG" -- "$PROBE"
echo "srun status \$?"
JOB
    run tmo sbatch --wait -N 3 --ntasks-per-node=2 -o "$SHARED/job.out" "$SHARED/job.sh"
    cat "$SHARED/job.out"
    [ "$status" -eq 0 ]
    run cat "$SHARED/job.out"
    assert_contains "$output" "mpirun status 0"
    assert_contains "$output" "srun status 0"
    assert_eq "$(grep -c 'probe allreduce sum=21 expected=21 ok' <<<"$output")" 2 "allreduce results"
    # The mpirun's probe lines come first; its six ranks on three nodes.
    assert_per_node "$(awk '/probe done/ {exit} {print}' <<<"$output")" 3 2
    assert_one_unpack_per_node "$output"
}

@test "multinode: a rank sees its own node's /tmp and abstract sockets, never another node's" {
    # Each node's rank leaves a mark in /tmp and listens on an abstract
    # socket named for the job; every rank then looks for all three.
    run tmo srun -N 3 --ntasks-per-node=1 "$HPCC" run -q "$IMG" -- sh -c '
        touch /tmp/mark-$SLURM_JOB_ID-$SLURM_NODEID
        sleep 1
        echo "node $SLURM_NODEID sees $(ls /tmp | grep -c "^mark-$SLURM_JOB_ID-") marks"
        rm -f /tmp/mark-$SLURM_JOB_ID-$SLURM_NODEID'
    [ "$status" -eq 0 ]
    assert_eq "$(grep -c ' sees 1 marks$' <<<"$output")" 3 "nodes seeing only their own mark"
    # perl-base is in every Debian image: a listener on @mark-JOB-NODE.
    run tmo srun -N 3 --ntasks-per-node=1 "$HPCC" run -q "$IMG" -- sh -c '
        perl -MSocket -e "socket(S, PF_UNIX, SOCK_STREAM, 0) or die; bind(S, pack_sockaddr_un(qq(\0mark-\$ARGV[0]))) or die; listen(S, 1); sleep 3" "$SLURM_JOB_ID-$SLURM_NODEID" &
        sleep 1.5
        echo "node $SLURM_NODEID sees $(grep -c "@mark-$SLURM_JOB_ID-" /proc/net/unix) abstract marks"
        wait'
    [ "$status" -eq 0 ]
    assert_eq "$(grep -c ' sees 1 abstract marks$' <<<"$output")" 3 "nodes seeing only their own socket"
}

@test "multinode: the image on the shared filesystem, read cold by every node at once, unpacks intact and writes nothing there" {
    local before after want
    before=$(find "$CLUSTER/shared" -printf '%p %s %T@\n' | sort)
    run tmo srun -N 3 --ntasks-per-node=1 "$HPCC" --debug run -q "$IMG" -- \
        sh -c 'echo "sum $(hostname) $(sha256sum /usr/local/bin/pingpong | cut -d" " -f1)"; test -f /shared/'"$ME"'/mpi.tar && echo "sees /shared on $(hostname)"'
    [ "$status" -eq 0 ]
    assert_eq "$(grep -c '^sees /shared on n' <<<"$output")" 3 "nodes seeing the shared filesystem"
    assert_one_unpack_per_node "$output"
    # What the image holds, read straight from the tar.
    want=$(tar -xOf "$IMG" layer.tar | tar -xOf - ./usr/local/bin/pingpong | sha256sum | cut -d' ' -f1)
    assert_eq "$(grep '^sum ' <<<"$output" | awk '{print $3}' | sort -u)" "$want" "pingpong's digest on every node"
    assert_eq "$(grep -c '^sum n' <<<"$output")" 3 "nodes checked"
    after=$(find "$CLUSTER/shared" -printf '%p %s %T@\n' | sort)
    assert_eq "$after" "$before" "the shared filesystem after the job"
}

# Mount table lengths of every node, as a process of this user there sees it.
node_mounts() {
    tmo srun -N 3 --ntasks-per-node=1 sh -c 'echo "$(hostname) $(wc -l </proc/self/mountinfo)"' | sort
}

# This user's live hpcc processes (ranks, join holders) and the test's
# `sleep 300` ranks. Zombies do not count: an exited holder is reparented
# to PID 1, and this machine's init reaps it only seconds later.
live_leftovers() {
    ps -u "$(id -u)" -o pid=,stat=,comm=,args= |
        awk '$2 !~ /^Z/ && ($3 == "hpcc" || ($3 == "sleep" && $5 == "300"))'
}
no_live_leftovers() { [ -z "$(live_leftovers)" ]; }

# assert_nothing_left MOUNTS_BEFORE: no hpcc, holder or rank process of this
# user is left on any node, no node has a mount more, and no node's cache
# keeps a half-made entry or anything in its mount directory.
assert_nothing_left() {
    local n
    wait_for 20 no_live_leftovers || {
        echo "left running:" >&2
        live_leftovers >&2
        return 1
    }
    assert_eq "$(node_mounts)" "$1" "mount tables of the nodes"
    for n in n1 n2 n3; do
        [ -d "$(node_cache $n)" ] || continue
        assert_eq "$(ls -A "$(node_cache $n)/tmp" | wc -l)" 0 "unpacks left in $n's cache"
        # The read-only root's mount point, mnt/merged, stays (empty).
        assert_eq "$(ls -A "$(node_cache $n)/mnt" 2>/dev/null | grep -vx merged | wc -l)" 0 "mount points left in $n's cache"
        assert_eq "$(ls -A "$(node_cache $n)/mnt/merged" 2>/dev/null | wc -l)" 0 "files under $n's mount point"
    done
}

@test "multinode: a rank's non-zero exit on one node ends the step with that code" {
    run tmo srun -N 3 --ntasks-per-node=1 "$HPCC" run -q "$IMG" -- \
        sh -c '[ "$SLURM_NODEID" != 1 ] || exit 7; sleep 2'
    assert_eq "$status" 7 "srun's exit status"
    run tmo "${MPIRUN[@]}" -np 6 "$HPCC" run -q "$IMG" -- \
        sh -c '[ "$OMPI_COMM_WORLD_RANK" != 3 ] || exit 7; sleep 2'
    assert_eq "$status" 7 "mpirun's exit status"
}

@test "multinode: scancel of a running step, and a rank killed by a signal, leave nothing on any node" {
    local mounts job pid
    mounts=$(node_mounts)
    rm -rf "$SHARED/up" && mkdir "$SHARED/up"
    srun -N 3 --ntasks-per-node=2 -J hpcc-cancel "$HPCC" run -q "$IMG" -- \
        sh -c "touch /shared/$ME/up/\$SLURM_PROCID; exec sleep 300" 3>&- &
    pid=$!
    all_up() { [ "$(ls "$SHARED/up" | wc -l)" -eq 6 ]; }
    wait_for 60 all_up || {
        kill "$pid"
        echo "the ranks did not all start: $(ls "$SHARED/up")" >&2
        return 1
    }
    job=$(squeue -h -u "$ME" -n hpcc-cancel -o %i)
    [ -n "$job" ]
    scancel "$job"
    run wait "$pid"
    [ "$status" -ne 0 ]
    assert_nothing_left "$mounts"

    run tmo srun -N 3 --ntasks-per-node=2 "$HPCC" run -q "$IMG" -- \
        sh -c '[ "$SLURM_PROCID" != 3 ] || kill -KILL $$; sleep 2'
    [ "$status" -ne 0 ]
    assert_nothing_left "$mounts"
}

@test "multinode: a node cache left half-unpacked by a killed job is recovered by the next job" {
    local pid n caught=""
    srun -N 3 --ntasks-per-node=1 -J hpcc-halfway "$HPCC" run -q "$IMG" -- true 3>&- &
    pid=$!
    # Kill the job while some node is mid-unpack.
    for _ in $(seq 1 3000); do
        for n in n1 n2 n3; do
            if [ -n "$(ls -A "$(node_cache $n)/tmp" 2>/dev/null)" ]; then
                caught=$n
                break 2
            fi
        done
        sleep 0.01
    done
    scancel -n hpcc-halfway -u "$ME"
    run wait "$pid"
    [ -n "$caught" ] || {
        echo "no node was caught mid-unpack" >&2
        return 1
    }
    [ "$status" -ne 0 ]
    run tmo srun -N 3 --ntasks-per-node=1 "$HPCC" run -q "$IMG" -- cat /etc/debian_version
    [ "$status" -eq 0 ]
    assert_eq "$(grep -c '^12\.' <<<"$output")" 3 "nodes that ran the image"
    for n in n1 n2 n3; do
        assert_eq "$(ls "$(node_cache $n)/images" | wc -l)" 1 "images in $n's cache"
        assert_eq "$(ls -A "$(node_cache $n)/tmp" | wc -l)" 0 "unpacks left in $n's cache"
    done
}

@test "multinode: every rank sees its own launcher's variables, under srun and mpirun" {
    local layout line rank host node
    run tmo srun -N 3 --ntasks-per-node=2 --mpi=pmix "$HPCC" run -q "$IMG" -- "$PROBE"
    [ "$status" -eq 0 ]
    refute_cma_warning "$output"
    while read -r line; do
        rank=$(sed -E 's/^probe rank=([0-9]+) .*/\1/' <<<"$line")
        host=$(sed -E 's/.* host=(n[0-9]+) .*/\1/' <<<"$line")
        node=$((${host#n} - 1))
        assert_contains "$line" "slurm_procid=$rank "
        assert_contains "$line" "pmix_rank=$rank "
        assert_contains "$line" "slurm_nodeid=$node "
        assert_contains "$line" "slurm_localid=$((rank % 2)) "
    done < <(grep '^probe rank=' <<<"$output")
    assert_eq "$(grep -c '^probe rank=' <<<"$output")" 6 "ranks reporting"

    run tmo "${MPIRUN[@]}" -np 6 "$HPCC" run -q "$IMG" -- "$PROBE"
    [ "$status" -eq 0 ]
    refute_cma_warning "$output"
    while read -r line; do
        rank=$(sed -E 's/^probe rank=([0-9]+) .*/\1/' <<<"$line")
        host=$(sed -E 's/.* host=(n[0-9]+) .*/\1/' <<<"$line")
        assert_eq "$host" "n$((rank / 2 + 1))" "rank $rank's node"
        assert_contains "$line" "ompi_rank=$rank "
        assert_contains "$line" "ompi_local_rank=$((rank % 2)) "
        assert_contains "$line" "ompi_node_rank=$((rank % 2))"
    done < <(grep '^probe rank=' <<<"$output")
    assert_eq "$(grep -c '^probe rank=' <<<"$output")" 6 "ranks reporting"
}

@test "multinode: --record run-%r.json from every rank names its node, rank and the image digest" {
    local r f digest
    rm -rf "$SHARED/rec" && mkdir "$SHARED/rec"
    run tmo srun -N 3 --ntasks-per-node=2 "$HPCC" run -q --record "$SHARED/rec/run-%j-%r.json" "$IMG" -- true
    [ "$status" -eq 0 ]
    assert_eq "$(ls "$SHARED/rec" | wc -l)" 6 "records"
    digest=$(grep -h -m1 '"digest"' "$SHARED"/rec/*.json | sort -u)
    assert_eq "$(wc -l <<<"$digest")" 1 "image digests named"
    assert_contains "$digest" '"sha256:'
    for r in 0 1 2 3 4 5; do
        f=$(ls "$SHARED"/rec/run-*-"$r".json)
        assert_contains "$(cat "$f")" "\"rank\": \"$r\""
        assert_contains "$(cat "$f")" "\"hostname\": \"n$((r / 2 + 1))\""
        assert_contains "$(cat "$f")" '"job": "'
    done
}

@test "multinode: the cluster ends leaving no daemon, mount, namespace or veth behind" {
    if [ "$(id -u)" != 0 ]; then
        # The cluster is run.sh's, which checks this after stopping it
        # (check-stopped.sh); a user checks that nothing of theirs is left
        # running and no node cache of theirs keeps a half-made entry.
        local n c
        wait_for 20 no_live_leftovers || {
            live_leftovers >&2
            return 1
        }
        [ -z "$(pgrep -u "$(id -u)" -x probe)" ]
        for n in n1 n2 n3; do
            for c in "$CLUSTER/nodes/$n/var-tmp/hpcc-$ME"*; do
                assert_eq "$(ls -A "$c/tmp" | wc -l)" 0 "unpacks left in $c"
            done
        done
        return 0
    fi
    sh "$SLURM_DIR/stop-cluster.sh" "$CLUSTER"
    sh "$SLURM_DIR/check-stopped.sh" "$CLUSTER"
}

#!/usr/bin/env bats
# A real one-node Slurm 22.05 cluster (munged, slurmctld, slurmd on
# localhost; integration/slurm/start-cluster.sh) running hpcc as the
# per-rank wrapper: `srun --mpi=pmix hpcc run IMAGE -- pingpong` and a
# batch script. Debian's Open MPI has PMIx but no PMI-2, so --mpi=pmix.
# As root the suite starts its own cluster; as a user it uses the one the
# runner (run.sh) started as root in SLURM_TEST_DIR.
# rootless: yes

load lib


setup_file() {
    require_cmd srun slurm-client
    # The daemons live in /usr/sbin, on root's PATH only; only root
    # starts them (a user runs against the cluster run.sh started).
    if [ "$(id -u)" = 0 ]; then
        require_cmd slurmd slurmd
        require_cmd munged munge
    fi
    require_mpi_image
    make_work_dir slurm
    start_or_use_cluster SLURM_TEST_DIR
}

teardown_file() {
    [ -n "${SUITE_WORK:-}" ] || return 0
    stop_own_cluster
    remove_work_dir
}

setup() {
    # shellcheck disable=SC1091
    . "$(cat "$SUITE_WORK/cluster-dir")/env"
    export HPCC_CACHE_DIR=$SUITE_WORK/cache
    cd "$SUITE_WORK"
}

# Open MPI refuses root unless told; harmless for a user.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

@test "slurm: srun -n 2 --mpi=pmix runs pingpong ranks joined in one container" {
    run tmo srun -n 2 --mpi=pmix "$HPCC" run -q "$HPCC_MPI_IMAGE" -- pingpong 20
    [ "$status" -eq 0 ]
    assert_contains "$output" "size=4194304 bandwidth_MBps="
    assert_contains "$output" "pingpong done ranks=2"
    if [[ "$output" == *"CMA is not available"* ]]; then
        echo "the ranks ran in separate user namespaces" >&2
        return 1
    fi
}

@test "slurm: the two ranks of a step share one mount and user namespace" {
    # Each rank holds its namespace for a second, so the inode numbers
    # compared cannot be reused.
    run tmo srun -n 2 "$HPCC" run -q "$HPCC_MPI_IMAGE" -- sh -c 'readlink /proc/self/ns/mnt /proc/self/ns/user; sleep 1'
    [ "$status" -eq 0 ]
    assert_eq "$(echo "$output" | grep -c '^mnt:')" 2 "ranks reporting"
    assert_eq "$(echo "$output" | grep '^mnt:' | sort -u | wc -l)" 1 "distinct mount namespaces"
    assert_eq "$(echo "$output" | grep '^user:' | sort -u | wc -l)" 1 "distinct user namespaces"
    # And not the host's.
    [[ "$output" != *"$(readlink /proc/self/ns/mnt)"* ]]
}

@test "slurm: a rank's exit status reaches srun" {
    run tmo srun -n 1 "$HPCC" run -q "$HPCC_MPI_IMAGE" -- sh -c 'exit 3'
    [ "$status" -eq 3 ]
}

@test "slurm: sbatch of a script that calls hpcc run" {
    cat >"$SUITE_WORK/job.sh" <<JOB
#!/bin/sh
echo "debian \$("$HPCC" run -q "$HPCC_MPI_IMAGE" -- cat /etc/debian_version)"
srun --mpi=pmix "$HPCC" run -q "$HPCC_MPI_IMAGE" -- pingpong 10
JOB
    run tmo sbatch --wait -n 2 -o "$SUITE_WORK/job.out" "$SUITE_WORK/job.sh"
    [ "$status" -eq 0 ]
    run cat "$SUITE_WORK/job.out"
    assert_contains "$output" "debian 12"
    assert_contains "$output" "pingpong done ranks=2"
}

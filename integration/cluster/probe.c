/* What every rank of a job sees, gathered on rank 0 and printed one line
 * per rank, plus an allreduce over all ranks: the multi-node tests read
 * where each rank ran (node, container namespaces) and what it was told
 * (launcher variables) from inside the ranks themselves.
 *
 * usage: probe [SECONDS]   (each rank holds its namespaces that long
 *                           before the gather, so their ids stay unique) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE 512

static const char *env(const char *k) {
    const char *v = getenv(k);
    return v && *v ? v : "-";
}

static void ns(const char *name, char *out, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/ns/%s", name);
    ssize_t r = readlink(path, out, n - 1);
    out[r > 0 ? r : 0] = 0;
}

int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1)
        sleep((unsigned)atoi(argv[1]));
    char host[64] = "", mnt[64], user[64], line[LINE];
    gethostname(host, sizeof host - 1);
    ns("mnt", mnt, sizeof mnt);
    ns("user", user, sizeof user);
    snprintf(line, sizeof line,
             "rank=%d host=%s mnt=%s user=%s slurm_procid=%s slurm_localid=%s slurm_nodeid=%s "
             "pmix_rank=%s ompi_rank=%s ompi_local_rank=%s ompi_node_rank=%s",
             rank, host, mnt, user, env("SLURM_PROCID"), env("SLURM_LOCALID"),
             env("SLURM_NODEID"), env("PMIX_RANK"), env("OMPI_COMM_WORLD_RANK"),
             env("OMPI_COMM_WORLD_LOCAL_RANK"), env("OMPI_COMM_WORLD_NODE_RANK"));
    char *all = rank == 0 ? malloc((size_t)size * LINE) : NULL;
    MPI_Gather(line, LINE, MPI_CHAR, all, LINE, MPI_CHAR, 0, MPI_COMM_WORLD);
    long mine = rank + 1, sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        for (int i = 0; i < size; i++)
            printf("probe %s\n", all + (size_t)i * LINE);
        long want = (long)size * (size + 1) / 2;
        printf("probe allreduce sum=%ld expected=%ld %s\n", sum, want, sum == want ? "ok" : "WRONG");
        printf("probe done ranks=%d\n", size);
        fflush(stdout);
    }
    MPI_Finalize();
    return 0;
}

/* Ping-pong between rank pairs (0<->1, 2<->3, ...): latency for 8 B and
 * bandwidth for 1 MiB and 4 MiB messages. Used by the MPI tests (which
 * check that it completes) and by `make bench` (which reads its numbers). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double pingpong(char *buf, int bytes, int iters, int peer, int leader) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (leader) {
            MPI_Send(buf, bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - t0) / (2.0 * iters); /* one-way time */
}

int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int iters = argc > 1 ? atoi(argv[1]) : 100;
    if (size % 2 != 0) {
        if (rank == 0) fprintf(stderr, "pingpong: needs an even number of ranks, got %d\n", size);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int peer = rank ^ 1, leader = (rank % 2 == 0);
    const int sizes[] = {8, 1 << 20, 4 << 20};
    char *buf = malloc(4 << 20);
    memset(buf, rank, 4 << 20);
    for (int s = 0; s < 3; s++) {
        int n = sizes[s] >= (1 << 20) ? iters / 4 + 1 : iters;
        double t = pingpong(buf, sizes[s], n, peer, leader);
        if (rank == 0) {
            if (sizes[s] == 8)
                printf("pingpong size=8 latency_us=%.2f\n", t * 1e6);
            else
                printf("pingpong size=%d bandwidth_MBps=%.1f\n", sizes[s], sizes[s] / t / 1e6);
            fflush(stdout);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) printf("pingpong done ranks=%d\n", size);
    free(buf);
    MPI_Finalize();
    return 0;
}

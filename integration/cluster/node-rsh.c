/* Open MPI's plm_rsh_agent for the simulated cluster: `node-rsh HOST CMD...`
 * runs CMD on HOST as ssh would, through that node's node-rshd. HOST is a
 * node name or address; the socket is NODES/HOST/rsh.sock, where NODES is
 * the `nodes` directory beside the directory this program lives in
 * (CLUSTER/bin/node-rsh -> CLUSTER/nodes). Exits with the command's status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void fail(const char *what, const char *arg) {
    fprintf(stderr, "node-rsh: %s %s: %s\n", what, arg, strerror(errno));
    exit(255);
}

int main(int argc, char **argv) {
    int i = 1;
    /* ssh options Open MPI may pass (-x and the like): nothing to do. */
    while (i < argc && argv[i][0] == '-')
        i++;
    if (argc - i < 2) {
        fprintf(stderr, "usage: node-rsh HOST CMD...\n");
        return 255;
    }
    const char *host = argv[i++];
    if (strchr(host, '/') || host[0] == '.') {
        fprintf(stderr, "node-rsh: not a node name: %s\n", host);
        return 255;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        fail("reading", "/proc/self/exe");
    self[n] = 0;
    char *cluster = dirname(dirname(self));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (snprintf(a.sun_path, sizeof a.sun_path, "%s/nodes/%s/rsh.sock", cluster, host) >=
        (int)sizeof a.sun_path) {
        fprintf(stderr, "node-rsh: socket path too long for node %s\n", host);
        return 255;
    }
    /* The command line, joined with spaces as ssh joins it. */
    size_t len = 0;
    for (int j = i; j < argc; j++)
        len += strlen(argv[j]) + 1;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        strcpy(cwd, "/");
    size_t total = strlen(cwd) + 1 + len;
    char *buf = malloc(total);
    if (!buf)
        fail("allocating", "the request");
    char *p = stpcpy(buf, cwd) + 1;
    for (int j = i; j < argc; j++) {
        p = stpcpy(p, argv[j]);
        *p++ = j + 1 < argc ? ' ' : 0;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0)
        fail("connecting to", a.sun_path);
    uint32_t l = (uint32_t)total;
    int fds[3] = {0, 1, 2};
    char cbuf[CMSG_SPACE(sizeof fds)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {&l, sizeof l};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                       .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    if (sendmsg(s, &m, 0) != sizeof l || send(s, buf, total, 0) != (ssize_t)total)
        fail("sending the command to", host);
    int32_t code;
    ssize_t r = recv(s, &code, sizeof code, MSG_WAITALL);
    if (r != sizeof code) {
        fprintf(stderr, "node-rsh: %s closed the connection without a status\n", host);
        return 255;
    }
    return code;
}

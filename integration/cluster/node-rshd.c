/* A minimal stand-in for sshd on a simulated node: it listens on a unix
 * socket inside the node's namespaces and runs `sh -c CMD` as whoever
 * connected (SO_PEERCRED), on the caller's own stdin/stdout/stderr (passed
 * with SCM_RIGHTS), then sends back the exit status. node-rsh.c is its
 * client, which Open MPI uses as plm_rsh_agent in place of ssh.
 *
 * Why not nsenter: only root may enter another process's namespaces, and
 * the tests run mpirun as an unprivileged user too. Why not sshd: it needs
 * host keys, PAM and an account setup the tests have no business changing.
 *
 * usage: node-rshd SOCKET     (as root, inside the node's namespaces)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXPAYLOAD (256 * 1024)

static void die(const char *what) {
    fprintf(stderr, "node-rshd: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Reads the request: 3 fds, then a u32 length and that many bytes
 * holding "CWD\0CMD\0". */
static int read_request(int conn, int fds[3], char **cwd, char **cmd) {
    uint32_t len;
    char cbuf[CMSG_SPACE(3 * sizeof(int))];
    struct iovec iov = {&len, sizeof len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                       .msg_controllen = sizeof cbuf};
    if (recvmsg(conn, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL) != sizeof len)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(3 * sizeof(int)))
        return -1;
    memcpy(fds, CMSG_DATA(c), 3 * sizeof(int));
    if (len < 2 || len > MAXPAYLOAD)
        return -1;
    char *buf = malloc(len + 1);
    if (!buf || recv(conn, buf, len, MSG_WAITALL) != (ssize_t)len)
        return -1;
    buf[len] = 0;
    *cwd = buf;
    size_t n = strlen(buf);
    if (n + 1 >= len)
        return -1;
    *cmd = buf + n + 1;
    return 0;
}

static void serve(int conn) {
    struct ucred who;
    socklen_t wl = sizeof who;
    int fds[3];
    char *cwd, *cmd;
    signal(SIGCHLD, SIG_DFL);
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &who, &wl) != 0)
        die("SO_PEERCRED");
    if (read_request(conn, fds, &cwd, &cmd) != 0) {
        fprintf(stderr, "node-rshd: malformed request from uid %u\n", who.uid);
        exit(1);
    }
    struct passwd *pw = getpwuid(who.uid);
    if (!pw) {
        fprintf(stderr, "node-rshd: uid %u has no passwd entry\n", who.uid);
        exit(1);
    }
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        /* Its own session, so the whole command can be ended at once. */
        setsid();
        for (int i = 0; i < 3; i++)
            if (dup2(fds[i], i) < 0)
                die("dup2");
        if (initgroups(pw->pw_name, who.gid) != 0 || setgid(who.gid) != 0 ||
            setuid(who.uid) != 0)
            die("dropping to the caller's identity");
        /* What sshd gives a non-interactive command. */
        clearenv();
        setenv("HOME", pw->pw_dir, 1);
        setenv("USER", pw->pw_name, 1);
        setenv("LOGNAME", pw->pw_name, 1);
        setenv("SHELL", "/bin/sh", 1);
        setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
        if (chdir(cwd) != 0 && chdir(pw->pw_dir) != 0)
            (void)chdir("/");
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        die("exec /bin/sh");
    }
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    /* The client going away (killed, or its mpirun ended) ends the
     * command, as a dropped ssh connection does. */
    int status = 0;
    for (;;) {
        pid_t r = waitpid(child, &status, WNOHANG);
        if (r == child)
            break;
        struct pollfd p = {conn, POLLIN | POLLRDHUP, 0};
        if (poll(&p, 1, 100) > 0 && (p.revents & (POLLIN | POLLHUP | POLLRDHUP | POLLERR))) {
            kill(-child, SIGTERM);
            waitpid(child, &status, 0);
            exit(0);
        }
    }
    int32_t code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    (void)!write(conn, &code, sizeof code);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: node-rshd SOCKET\n");
        return 2;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof a.sun_path) {
        fprintf(stderr, "node-rshd: socket path too long: %s\n", argv[1]);
        return 2;
    }
    strcpy(a.sun_path, argv[1]);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        die("socket");
    unlink(argv[1]);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0)
        die("bind");
    if (chmod(argv[1], 0666) != 0)
        die("chmod");
    if (listen(s, 64) != 0)
        die("listen");
    /* Handlers are reaped by the kernel; each one waits for its own command. */
    signal(SIGCHLD, SIG_IGN);
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            die("accept");
        }
        pid_t h = fork();
        if (h == 0) {
            close(s);
            serve(c);
        }
        close(c);
    }
}

/* The upstream of `muxtop bench proxy`: a minimal epoll echo server in C, so that what the
 * bench measures is the proxy in front of it, not a Python server behind it.
 *
 *   echo_server -p PORT      serves 127.0.0.1:PORT until SIGTERM
 *
 * Level-triggered; each read is sent back at once; what the kernel does not take waits in the
 * connection's buffer, and that connection is not read again until it has been sent. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
#define MAXFD 65536

struct pending { char *data; size_t len, off; };
static struct pending out[MAXFD];

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(out[fd].data);
    out[fd] = (struct pending){0};
}

int main(int argc, char **argv) {
    int port = 0, flag;
    while ((flag = getopt(argc, argv, "p:")) != -1)
        if (flag == 'p') port = atoi(optarg);
    if (port <= 0 || port > 65535) { fprintf(stderr, "usage: echo_server -p PORT\n"); return 2; }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096)) {
        perror("echo_server: listen"); return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, ready[512];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static char buf[BUF];
    for (;;) {
        int n = epoll_wait(ep, ready, 512, -1);
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAXFD) { close(c); continue; }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            struct pending *p = &out[fd];
            if (p->len) {  /* EPOLLOUT: send what waits, then read again */
                ssize_t s = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);
                if (s < 0 && errno != EAGAIN) { drop(ep, fd); continue; }
                if (s > 0) p->off += (size_t)s;
                if (p->off == p->len) {
                    p->len = p->off = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
                }
                continue;
            }
            ssize_t got = recv(fd, buf, BUF, 0);
            if (got < 0 && errno == EAGAIN) continue;
            if (got <= 0) { drop(ep, fd); continue; }
            ssize_t s = send(fd, buf, (size_t)got, MSG_NOSIGNAL);
            if (s < 0 && errno != EAGAIN) { drop(ep, fd); continue; }
            if (s < 0) s = 0;
            if (s < got) {
                if (!p->data && !(p->data = malloc(BUF))) { drop(ep, fd); continue; }
                memcpy(p->data, buf + s, (size_t)(got - s));
                p->len = (size_t)(got - s);
                p->off = 0;
                struct epoll_event cev = {.events = EPOLLOUT, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
            }
        }
    }
}

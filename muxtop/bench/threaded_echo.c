/* A multi-threaded echo server, the target `muxtop bench attach --target threaded` traces (as
 * memcached -t 4 is one): N threads, each with its own epoll set and its own SO_REUSEPORT
 * listener, the kernel sharing the connections out; level-triggered, one recv per event,
 * echo what came. Usage: threaded_echo PORT [THREADS]. Runs until killed. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int port;

static int listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), on = 1;
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
    if (bind(fd, (struct sockaddr *)&at, sizeof at) || listen(fd, 1024)) {
        perror("listen");
        exit(1);
    }
    return fd;
}

static void *loop(void *unused) {
    (void)unused;
    int lfd = listener(), ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, ready[256];
    char buf[65536];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, ready, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (fd == lfd) {
                int c, on = 1;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            ssize_t got = recv(fd, buf, sizeof buf, 0);
            if (got <= 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                continue;
            }
            for (ssize_t sent = 0; sent < got;) {  /* small echoes: the kernel takes them */
                ssize_t k = send(fd, buf + sent, got - sent, MSG_NOSIGNAL);
                if (k <= 0)
                    break;
                sent += k;
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] < '0' || argv[1][0] > '9') {  /* -h: the build's check */
        fprintf(stderr, "usage: threaded_echo PORT [THREADS]\n");
        return argc > 1 && strcmp(argv[1], "-h") == 0 ? 0 : 2;
    }
    port = atoi(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    pthread_t ids[64];
    if (threads < 1 || threads > 64)
        threads = 4;
    for (int i = 1; i < threads; i++)
        pthread_create(&ids[i], NULL, loop, NULL);
    loop(NULL);
    return 0;
}

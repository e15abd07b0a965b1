/* echo_client: muxtop's echo load client (C99, Linux epoll), built on first use by
 * muxtop.bench.loadgen.
 *
 *   echo_client -p PORT [-c CONNS=1] [-d SECS=5] [-w WARMUP=1] [-s SIZE=64] [-k INFLIGHT=1]
 *               [-P SERVER_PID]
 *
 * Opens CONNS connections to 127.0.0.1:PORT and has each echo one message, so that every
 * connection is accepted and served before the clock starts (ready_ms: connects plus that first
 * echo). Then each keeps INFLIGHT messages of SIZE bytes in flight (1: plain ping-pong), checks
 * every echoed byte, and sends the next message as soon as one comes back. WARMUP seconds run
 * unmeasured, SECS are measured, then the messages still in flight are drained (and checked) so
 * the connections close cleanly. Prints one JSON line: round trips/s, p50/p99/max latency (µs),
 * mismatched messages, lost connections, and the CPU% of this client and (with -P) of the server
 * over the measured window (100 = one core).
 *
 * Exit status 0; 1 on a mismatched byte or a lost connection (after the JSON line) or when the
 * run cannot start (no JSON); 2 on bad arguments. Each failure has one line on stderr.
 *
 * Why it is shaped so:
 * - Each connection's bytes form one stream in which byte x is a function of (connection, x).
 *   The client keeps no copy of what it sent, a partial write resumes at an offset, and bytes
 *   that are stale, shifted, duplicated or from another connection cannot pass as good.
 * - Level-triggered epoll and one recv per readiness: with one message in flight one recv takes
 *   the whole echo. EPOLLOUT is watched only while the kernel has refused part of a write.
 * - Latencies go into a log-linear histogram (buckets under 0.8% wide), so memory stays the
 *   same however long the run; the maximum is kept exactly.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NAME "echo_client"
#define CHUNK 65536              /* bytes per recv, and per send call */
#define MAX_EVENTS 1024
#define NS 1000000000ull
#define CONNECT_LIMIT_S 15       /* every connection established by then */
#define PRIME_LIMIT_S 30         /* every connection echoed once by then (from the start) */
#define DRAIN_LIMIT_NS (NS / 2)  /* after the window: wait this long for the last echoes */
#define SPARE_FDS 16             /* stdio, epoll, whatever the parent left open */

typedef struct {
    int fd, dead, want_out, bad;   /* bad: the message being received has a wrong byte */
    uint32_t id;
    uint64_t issued, echoed;       /* messages let onto the wire / fully echoed */
    uint64_t sent, got;            /* stream bytes written / received and checked */
    size_t rx_off;                 /* bytes of the current message received so far */
    uint64_t *issued_at;           /* ns each in-flight message was issued, by seq % inflight */
} conn_t;

static struct {
    long port, conns, inflight, server_pid;
    double secs, warmup;
    size_t size;
} opt = {0, 1, 1, 0, 5.0, 1.0, 64};

static int ep = -1, live;
static conn_t *conns;
static uint64_t window_start = UINT64_MAX, window_end = UINT64_MAX;
static uint64_t issue_limit = 1;   /* messages per connection: one while priming */
static uint64_t open_messages;     /* issued and not yet echoed, over live connections */
static uint64_t completed, mismatches, errors, primed;
static char first_error[256], first_mismatch[256];
static uint8_t rbuf[CHUNK], pbuf[CHUNK];

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ the byte stream */

static uint64_t mix(uint64_t z) {  /* splitmix64's finalizer: a bijection on 64 bits */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Bytes [at, at + len) of connection id's stream. Word w of it is mix(id << 40 | w): distinct
 * inputs for every connection and word (up to 8 TB a connection), so distinct words. */
static void pattern(uint8_t *dst, uint32_t id, uint64_t at, size_t len) {
    uint64_t word = at / 8, base = (uint64_t)id << 40, w;
    size_t skip = at % 8;
    if (skip && len) {  /* the rest of a word begun by an earlier call */
        w = mix(base | word++);
        size_t n = 8 - skip < len ? 8 - skip : len;
        memcpy(dst, (uint8_t *)&w + skip, n);
        dst += n;
        len -= n;
    }
    for (; len >= 8; dst += 8, len -= 8) {  /* whole words: a fixed-size copy, inlined */
        w = mix(base | word++);
        memcpy(dst, &w, 8);
    }
    if (len) {
        w = mix(base | word);
        memcpy(dst, &w, len);
    }
}

/* ------------------------------------------------------------------ latency histogram */

/* Below 2^SUB_BITS ns every value has its own bucket; above, each power of two is cut into
 * HALF buckets, so a bucket is at most 1/128 of its values wide. */
#define SUB_BITS 8
#define SUB (1u << SUB_BITS)
#define HALF (SUB / 2)
#define TOP_BIT 44                 /* 2^44 ns is almost 5 hours: latencies above count there */
static uint64_t hist[SUB + (TOP_BIT - SUB_BITS + 1) * HALF];
static uint64_t hist_n, hist_max;

static int top_bit(uint64_t v) {
#if defined(__GNUC__)
    return 63 - __builtin_clzll(v);
#else
    int b = 0;
    while (v >>= 1) b++;
    return b;
#endif
}

static void record(uint64_t ns) {
    size_t i = ns;
    if (ns >= SUB) {
        int top = top_bit(ns);
        if (top > TOP_BIT) top = TOP_BIT, ns = (2ull << TOP_BIT) - 1;
        int shift = top - (SUB_BITS - 1);
        i = SUB + (size_t)(top - SUB_BITS) * HALF + ((ns >> shift) - HALF);
    }
    hist[i]++;
    hist_n++;
    if (ns > hist_max) hist_max = ns;
}

/* The q-quantile in µs (nearest rank), as the middle of its bucket, never above the max. */
static double quantile_us(double q) {
    if (!hist_n) return 0;
    uint64_t rank = (uint64_t)(q * hist_n + 0.999999), seen = 0;
    if (rank < 1) rank = 1;
    for (size_t i = 0; i < sizeof hist / sizeof *hist; i++) {
        if ((seen += hist[i]) < rank) continue;
        double mid = i;
        if (i >= SUB) {
            size_t k = i - SUB;
            int shift = (int)(k / HALF) + 1;
            mid = (double)((uint64_t)(k % HALF + HALF) << shift) + (double)(1ull << shift) / 2;
        }
        return (mid < hist_max ? mid : hist_max) / 1e3;
    }
    return hist_max / 1e3;
}

/* ------------------------------------------------------------------ connections */

static void lose(conn_t *c, const char *call, int err) {
    if (!errors)
        snprintf(first_error, sizeof first_error, "%s on connection %u: %s", call, c->id,
                 err ? strerror(err) : "the server closed it");
    errors++;
    open_messages -= c->issued - c->echoed;
    c->dead = 1;
    live--;
    close(c->fd);  /* also takes it out of the epoll set: no one else holds the socket */
    c->fd = -1;
}

static void watch(conn_t *c, int out) {
    if (c->want_out == out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        lose(c, "epoll_ctl", errno);
        return;
    }
    c->want_out = out;
}

/* Let more messages onto the wire (up to INFLIGHT unanswered, none once the window has
 * closed), then write whatever the kernel takes of what is due. */
static void pump(conn_t *c, uint64_t t) {
    uint64_t k = (uint64_t)opt.inflight;
    while (c->issued < issue_limit && c->issued - c->echoed < k && t < window_end) {
        c->issued_at[c->issued % k] = t;
        c->issued++;
        open_messages++;
    }
    uint64_t due = c->issued * opt.size;
    while (c->sent < due) {
        size_t n = due - c->sent < CHUNK ? (size_t)(due - c->sent) : CHUNK;
        pattern(pbuf, c->id, c->sent, n);
        ssize_t w = send(c->fd, pbuf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            lose(c, "send", errno);
            return;
        }
        c->sent += (uint64_t)w;
    }
    watch(c, c->sent < due);
}

static void note_mismatch(conn_t *c, const uint8_t *got, const uint8_t *want, size_t n) {
    if (first_mismatch[0]) return;
    size_t i = 0;
    while (i < n && got[i] == want[i]) i++;
    snprintf(first_mismatch, sizeof first_mismatch,
             "first on connection %u, message %llu, byte %zu: got 0x%02x, sent 0x%02x",
             c->id, (unsigned long long)c->echoed, c->rx_off + i, got[i], want[i]);
}

static void message_done(conn_t *c, uint64_t t) {
    uint64_t seq = c->echoed++;
    open_messages--;
    if (seq == 0) primed++;
    if (c->bad) {
        mismatches++;
        c->bad = 0;
    } else if (t >= window_start && t < window_end) {
        completed++;
        record(t - c->issued_at[seq % (uint64_t)opt.inflight]);
    }
    c->rx_off = 0;
}

/* Compare received bytes with the stream, message by message. */
static void check(conn_t *c, const uint8_t *p, size_t len, uint64_t t) {
    if (c->got + len > c->sent) {  /* more than was ever sent: the surplus is wrong in itself */
        if (!first_mismatch[0])
            snprintf(first_mismatch, sizeof first_mismatch,
                     "first on connection %u: %llu bytes more than were sent", c->id,
                     (unsigned long long)(c->got + len - c->sent));
        mismatches++;
        len = (size_t)(c->sent - c->got);
    }
    while (len) {
        size_t n = opt.size - c->rx_off < len ? opt.size - c->rx_off : len;
        pattern(pbuf, c->id, c->got, n);
        if (memcmp(p, pbuf, n)) {
            note_mismatch(c, p, pbuf, n);
            c->bad = 1;
        }
        p += n;
        len -= n;
        c->got += n;
        c->rx_off += n;
        if (c->rx_off == opt.size) message_done(c, t);
    }
}

static void on_readable(conn_t *c) {
    ssize_t r;
    do r = recv(c->fd, rbuf, sizeof rbuf, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) {
        lose(c, "recv", r < 0 ? errno : 0);
        return;
    }
    uint64_t t = now_ns();
    check(c, rbuf, (size_t)r, t);
    pump(c, t);
}

/* One epoll_wait and the events it returned. */
static void turn(uint64_t until) {
    struct epoll_event evs[MAX_EVENTS];
    uint64_t t = now_ns();
    uint64_t ms = until > t ? (until - t + 999999) / 1000000 : 0;
    int n = epoll_wait(ep, evs, MAX_EVENTS, ms > 1000 ? 1000 : (int)ms);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;  /* an earlier event of this batch may have lost it */
        if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c);
        if (!c->dead && (evs[i].events & EPOLLOUT)) pump(c, now_ns());
    }
}

/* ------------------------------------------------------------------ setting up */

static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (usage: " NAME " -p PORT [-c CONNS] [-d SECS] [-w WARMUP] [-s SIZE] [-k INFLIGHT]"
          " [-P SERVER_PID])\n", stderr);
    va_end(ap);
    exit(2);
}

static long whole(int flag, const char *text, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        usage_error("-%c %s: want a whole number from %ld to %ld", flag, text, lo, hi);
    return v;
}

static double seconds(int flag, const char *text, double lo) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= 1e6))
        usage_error("-%c %s: want seconds from %g to 1000000", flag, text, lo);
    return v;
}

static void parse(int argc, char **argv) {
    int flag;
    while ((flag = getopt(argc, argv, ":p:c:d:w:s:k:P:h")) != -1) {
        switch (flag) {
        case 'p': opt.port = whole(flag, optarg, 1, 65535); break;
        case 'c': opt.conns = whole(flag, optarg, 1, 1000000); break;
        case 'd': opt.secs = seconds(flag, optarg, 0.001); break;
        case 'w': opt.warmup = seconds(flag, optarg, 0); break;
        case 's': opt.size = (size_t)whole(flag, optarg, 1, 1L << 26); break;
        case 'k': opt.inflight = whole(flag, optarg, 1, 1L << 16); break;
        case 'P': opt.server_pid = whole(flag, optarg, 1, 1L << 30); break;
        case 'h':
            puts("usage: " NAME " -p PORT [-c CONNS] [-d SECS] [-w WARMUP] [-s SIZE]"
                 " [-k INFLIGHT] [-P SERVER_PID]");
            exit(0);
        case ':': usage_error("-%c needs a value", optopt); break;
        default: usage_error("unknown flag -%c", optopt);
        }
    }
    if (optind < argc) usage_error("unexpected argument %s", argv[optind]);
    if (!opt.port) usage_error("-p PORT is required");
}

/* One fd a connection: raise the soft limit as far as needed, or say which limit is short. */
static void make_room(void) {
    struct rlimit rl;
    rlim_t need = (rlim_t)opt.conns + SPARE_FDS;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need) return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
        die("%ld connections need %llu file descriptors but the limit is %llu (hard %llu): "
            "ask for fewer connections or raise the limit (ulimit -n)", opt.conns,
            (unsigned long long)need, (unsigned long long)rl.rlim_cur,
            (unsigned long long)rl.rlim_max);
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("cannot raise the file descriptor limit to %llu: %s", (unsigned long long)need,
            strerror(errno));
}

static void open_all(void) {
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  /* only ever this machine */
    int one = 1;
    for (long i = 0; i < opt.conns; i++) {
        conn_t *c = &conns[i];
        c->id = (uint32_t)i;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            die("socket for connection %ld of %ld: %s", i + 1, opt.conns, strerror(errno));
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS
            && errno != EINTR)  /* an interrupted non-blocking connect goes on by itself */
            die("connect to 127.0.0.1:%ld (connection %ld of %ld): %s%s", opt.port, i + 1,
                opt.conns, strerror(errno),
                errno == EADDRNOTAVAIL ? " (out of local ports)" : "");
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
        c->want_out = 1;
    }
    live = (int)opt.conns;
}

/* Wait until every connect has finished; then each connection is watched for EPOLLIN only. */
static void wait_connected(uint64_t deadline) {
    long pending = opt.conns;
    struct epoll_event evs[MAX_EVENTS];
    while (pending > 0) {
        if (now_ns() >= deadline)
            die("%ld of %ld connections to 127.0.0.1:%ld not established after %d s", pending,
                opt.conns, opt.port, CONNECT_LIMIT_S);
        int n = epoll_wait(ep, evs, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c->want_out) continue;  /* established already: bytes the server sent first */
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
            if (err) die("connect to 127.0.0.1:%ld: %s", opt.port, strerror(err));
            watch(c, 0);
            pending--;
        }
    }
}

/* One echo on every connection before the clock starts. */
static void prime(uint64_t deadline) {
    for (long i = 0; i < opt.conns; i++) pump(&conns[i], now_ns());
    while (primed < (uint64_t)opt.conns) {
        if (errors) die("before the run: %s", first_error);
        if (now_ns() >= deadline)
            die("only %llu of %ld connections had their first message echoed after %d s",
                (unsigned long long)primed, opt.conns, PRIME_LIMIT_S);
        turn(deadline);
    }
}

/* ------------------------------------------------------------------ measuring */

static double cpu_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* utime + stime of a process in seconds, from /proc/PID/stat; -1 if it cannot be read. */
static double cpu_of(long pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');  /* the name may hold spaces and parentheses: skip past it */
    unsigned long long ut, st;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int main(int argc, char **argv) {
    parse(argc, argv);
    make_room();
    conns = calloc((size_t)opt.conns, sizeof *conns);
    uint64_t *stamps = calloc((size_t)opt.conns * (size_t)opt.inflight, sizeof *stamps);
    if (!conns || !stamps)
        die("out of memory for %ld connections x %ld in flight", opt.conns, opt.inflight);
    for (long i = 0; i < opt.conns; i++) conns[i].issued_at = stamps + i * opt.inflight;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));

    uint64_t begin = now_ns();
    open_all();
    wait_connected(begin + CONNECT_LIMIT_S * NS);
    prime(begin + PRIME_LIMIT_S * NS);
    uint64_t t0 = now_ns();
    window_start = t0 + (uint64_t)(opt.warmup * 1e9);
    window_end = window_start + (uint64_t)(opt.secs * 1e9);
    issue_limit = UINT64_MAX;
    for (long i = 0; i < opt.conns; i++)
        if (!conns[i].dead) pump(&conns[i], t0);

    int started = 0;
    uint64_t t, w0 = 0;
    double c0 = 0, s0 = 0;
    while ((t = now_ns()) < window_end && live > 0) {
        if (!started && t >= window_start) {
            started = 1, w0 = t, c0 = cpu_self();
            s0 = opt.server_pid ? cpu_of(opt.server_pid) : -1;
        }
        turn(started ? window_end : window_start);
    }
    double wall = started ? (t - w0) / 1e9 : 0, client_cpu = cpu_self() - c0;
    double s1 = opt.server_pid && started ? cpu_of(opt.server_pid) : -1;
    double server_pct = s0 >= 0 && s1 >= 0 && wall > 0 ? 100 * (s1 - s0) / wall : -1;

    /* Drain: what is in flight comes back (and is checked), so each close sends a FIN, not
     * the RST a socket closed with unread data sends. */
    for (uint64_t drain_end = now_ns() + DRAIN_LIMIT_NS; open_messages && now_ns() < drain_end;)
        turn(drain_end);
    for (long i = 0; i < opt.conns; i++)
        if (!conns[i].dead) close(conns[i].fd);

    printf("{\"conns\": %ld, \"size\": %zu, \"inflight\": %ld, \"secs\": %.3f, "
           "\"ready_ms\": %.1f, \"rtt_per_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"max_us\": %.1f, \"completed\": %llu, \"mismatches\": %llu, \"errors\": %llu, "
           "\"client_cpu_pct\": %.1f, \"server_cpu_pct\": %.1f}\n",
           opt.conns, opt.size, opt.inflight, wall, (t0 - begin) / 1e6,
           completed / opt.secs, quantile_us(0.5), quantile_us(0.99), hist_max / 1e3,
           (unsigned long long)completed, (unsigned long long)mismatches,
           (unsigned long long)errors, wall > 0 ? 100 * client_cpu / wall : 0.0, server_pct);
    fflush(stdout);
    if (mismatches)
        fprintf(stderr, NAME ": %llu echoed messages differed from what was sent (%s)\n",
                (unsigned long long)mismatches, first_mismatch);
    if (errors)
        fprintf(stderr, NAME ": %llu of %ld connections were lost (first: %s)\n",
                (unsigned long long)errors, opt.conns, first_error);
    return mismatches || errors ? 1 : 0;
}

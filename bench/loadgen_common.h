/*
 * loadgen_common.h: what the echo and chat load generators share (one copy,
 * so a fix to a histogram bucket or a non-blocking connect reaches both).
 *
 * Everything is `static inline` (each program compiles only what it calls,
 * with no unused-function warning). The including file defines, before this
 * include:
 *
 *     #define LG_NAME "loadgen"            its name, for error messages
 *     static void die(const char *fmt, ...);   prints, then _exit(2)
 *
 * Latency histogram in microseconds: exact below 1024 us, then 512
 * sub-buckets per power of two (relative error below 0.2 %).
 */
#ifndef LOADGEN_COMMON_H
#define LOADGEN_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define HIST_LINEAR 1024
#define HIST_SUB 512
#define HIST_MAXEXP 40
#define HIST_SIZE (HIST_LINEAR + (HIST_MAXEXP - 10) * HIST_SUB)

static volatile sig_atomic_t got_signal;

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* This process's user+system CPU time, in microseconds. */
static inline uint64_t cpu_now_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Milliseconds from now to deadline, rounded up, at most cap (an epoll timeout). */
static inline int ms_until(uint64_t now, uint64_t deadline, int cap) {
    if (deadline <= now) return 0;
    uint64_t ms = (deadline - now + 999999) / 1000000;
    return ms > (uint64_t)cap ? cap : (int)ms;
}

/* {"event":"NAME"} on stdout at once: the driver samples server CPU on it. */
static inline void emit_event(const char *name) {
    printf("{\"event\":\"%s\"}\n", name);
    fflush(stdout);
}

static inline int hist_index(uint64_t v) {
    if (v < HIST_LINEAR) return (int)v;
    int k = 63 - __builtin_clzll(v);
    if (k >= HIST_MAXEXP) return HIST_SIZE - 1;
    uint64_t sub = (v >> (k - 9)) & (HIST_SUB - 1);
    return HIST_LINEAR + (k - 10) * HIST_SUB + (int)sub;
}

static inline double hist_value(int idx) {
    if (idx < HIST_LINEAR) return idx;
    int k = (idx - HIST_LINEAR) / HIST_SUB + 10;
    uint64_t sub = (uint64_t)((idx - HIST_LINEAR) % HIST_SUB);
    uint64_t width = 1ull << (k - 9);
    uint64_t lo = (1ull << k) + sub * width;
    return (double)lo + (double)width / 2.0;
}

/* The q-quantile (0..1) of `total` samples in `hist`, 0 when there are none. */
static inline double percentile(const uint64_t *hist, uint64_t total, double q) {
    if (total == 0) return 0.0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want < 1) want = 1;
    if (want > total) want = total;
    uint64_t cum = 0;
    for (int i = 0; i < HIST_SIZE; i++) {
        cum += hist[i];
        if (cum >= want) return hist_value(i);
    }
    return hist_value(HIST_SIZE - 1);
}

/* Decimal digits of v at dst (no NUL); returns how many. */
static inline int utoa(char *dst, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
    return n;
}

/* "abc...zabc..." of n bytes (malloc'd): line text is cut from it at a phase. */
static inline char *make_filler(size_t n) {
    char *filler = malloc(n);
    if (!filler) die("out of memory");
    for (size_t i = 0; i < n; i++) filler[i] = (char)('a' + i % 26);
    return filler;
}

static inline long parse_long(const char *s, const char *what, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, LG_NAME ": bad %s '%s' (want %ld..%ld)\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

static inline double parse_double(const char *s, const char *what, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, LG_NAME ": bad %s '%s' (want %g..%g)\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

/* addr for host (IPv4 only) and port; 0, or -1 with the reason on stderr. */
static inline int ipv4_address(struct sockaddr_in *addr, const char *host, int port) {
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr->sin_addr) != 1) {
        fprintf(stderr, LG_NAME ": host must be an IPv4 address, got '%s'\n", host);
        return -1;
    }
    return 0;
}

/* The soft open-file limit raised to `need` (up to the hard limit); the limit now. */
static inline rlim_t raise_nofile(rlim_t need) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static inline void on_signal(int sig) {
    (void)sig;
    got_signal = 1;
}

/* SIGTERM and SIGINT set got_signal (the loops stop cleanly); SIGPIPE ignored. */
static inline void install_signals(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* A non-blocking TCP_NODELAY connect to addr, registered on ep for EPOLLOUT
 * with `ptr`; rcvbuf > 0 sets a small receive buffer first. Returns the fd. */
static inline int start_connect_fd(int ep, const struct sockaddr_in *addr, const char *host,
                                   int port, void *ptr, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise the open-file limit?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS)
        die("connect to %s:%d: %s", host, port, strerror(errno));
    struct epoll_event ev = {0};
    ev.events = EPOLLOUT;
    ev.data.ptr = ptr;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    return fd;
}

/* Dies if the non-blocking connect on fd failed. */
static inline void check_connected(int fd, const char *host, int port) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err) die("connect to %s:%d: %s", host, port, strerror(err));
}

/* Watch fd for input, and for output when want_out. */
static inline void epoll_want(int ep, int fd, void *ptr, int want_out) {
    struct epoll_event ev = {0};
    ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0);
    ev.data.ptr = ptr;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

/* Sends out[*off..len) until done or EAGAIN; adds what went to *sent_bytes.
 * Returns 0, or -1 with errno set (send failed; errno 0: it returned 0). */
static inline int send_pending(int fd, const char *out, size_t *off, size_t len,
                               uint64_t *sent_bytes) {
    while (*off < len) {
        ssize_t n = send(fd, out + *off, len - *off, MSG_NOSIGNAL);
        if (n > 0) {
            *off += (size_t)n;
            *sent_bytes += (uint64_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            if (n == 0) errno = 0;
            return -1;
        }
    }
    return 0;
}

/* recv, retried on EINTR. */
static inline ssize_t recv_some(int fd, char *buf, size_t size) {
    ssize_t n;
    for (;;) {
        n = recv(fd, buf, size, 0);
        if (n >= 0 || errno != EINTR) return n;
    }
}

#endif

/*
 * loadgen: epoll load generator for the linechat echo protocol.
 *
 * Protocol: the client sends LINE "\r\n", the server answers
 * "You sent: " LINE "\r\n".  Every reply is checked byte for byte against the
 * line that was sent; any difference is fatal (exit status 2).
 *
 * Load mode (default): C connections, P lines in flight per connection
 * (pipelined), lines of S bytes (not counting CRLF).  Every connection first
 * does one checked round trip ("ping"), then all connections start together,
 * run a warm-up of W seconds and a measured window of D seconds, then stop
 * sending and wait for every outstanding reply.  Prints one JSON line.
 *
 * Idle mode (--idle): open C connections, do one checked round trip on each,
 * print {"event":"ready",...} and hold them open until stdin reaches EOF, the
 * process gets SIGTERM/SIGINT, or --hold seconds pass.
 *
 * Work is split over --procs worker processes (fork); the parent only
 * coordinates and aggregates.  Worker 0 prints {"event":"measure_start"} and
 * {"event":"measure_end"} at the edges of the measured window so that a
 * driver can sample server CPU time exactly over it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LG_NAME "loadgen"
static void die(const char *fmt, ...);
#include "../loadgen_common.h"

#define PREFIX "You sent: "
#define PREFIX_LEN 10
#define MAX_PROCS 64
#define RBUF_SIZE (256 * 1024)
#define MAX_EVENTS 512

struct stats {
    uint64_t round_trips;
    uint64_t lat_sum_us;
    uint64_t lat_max_us;
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint64_t cpu_us; /* this worker's user+system CPU over the measured window */
    uint64_t hist[HIST_SIZE];
};

struct shared {
    int ready;         /* workers whose connections are all established */
    int stop;          /* idle mode: parent asks workers to close and exit */
    int claimed;       /* load mode: the worker that sets the clock */
    uint64_t start_ns; /* load mode: 0 until every worker is ready */
    uint64_t measure_start_ns;
    uint64_t measure_end_ns;
    uint64_t established_ns;
    struct stats st[MAX_PROCS];
};

enum { ST_CONNECTING, ST_PINGING, ST_READY, ST_RUNNING, ST_DRAINING };

struct conn {
    int fd;
    int state;
    uint32_t id;
    int want_out;
    uint64_t sent_seq; /* lines generated so far */
    uint64_t recv_seq; /* replies completed so far */
    size_t rpos;       /* bytes of the current reply matched so far */
    char *out;
    size_t out_off, out_len, out_cap;
    char *lines;  /* ring of P lines of S bytes: what was sent */
    uint64_t *ts; /* send time (ns) per ring slot */
};

static struct {
    const char *host;
    int port;
    long conns;
    long pipeline;
    long size;
    double duration;
    double warmup;
    long procs;
    int idle;
    double hold;
    long max_pending;
    double connect_timeout;
    double drain_timeout;
} cfg = {"127.0.0.1", 0, 1, 1, 32, 5.0, 1.0, 1, 0, 300.0, 100, 60.0, 10.0};

static struct shared *sh;
static int worker_idx = -1;
static struct sockaddr_in addr;
static char *filler; /* "abc...zabc..." long enough for any offset + S */
static char *rbuf;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen%s: ", worker_idx >= 0 ? " worker" : "");
    if (worker_idx >= 0) fprintf(stderr, "[%d] ", worker_idx);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    _exit(2);
}

/* The line for (connection id, sequence number): "c<id>-<seq>-" then
 * letters whose phase depends on both.  Never ".", never CR or LF. */
static void gen_line(char *dst, uint32_t id, uint64_t seq) {
    char hdr[64];
    int n = 0;
    hdr[n++] = 'c';
    n += utoa(hdr + n, id);
    hdr[n++] = '-';
    n += utoa(hdr + n, seq);
    hdr[n++] = '-';
    size_t s = (size_t)cfg.size;
    size_t h = (size_t)n < s ? (size_t)n : s;
    memcpy(dst, hdr, h);
    if (h < s) {
        size_t phase = (size_t)((seq * 7 + id * 3) % 26);
        memcpy(dst + h, filler + phase + h, s - h);
    }
}

static void set_events(int ep, struct conn *c, int want_out) {
    epoll_want(ep, c->fd, c, want_out);
    c->want_out = want_out;
}

static void flush_out(int ep, struct conn *c, struct stats *st) {
    if (send_pending(c->fd, c->out, &c->out_off, c->out_len, &st->bytes_sent) < 0)
        die("connection %u: send: %s", c->id, errno ? strerror(errno) : "returned 0");
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->want_out) set_events(ep, c, 0);
    } else if (!c->want_out) {
        set_events(ep, c, 1);
    }
}

static void queue_line(struct conn *c, uint64_t now) {
    size_t s = (size_t)cfg.size;
    uint64_t seq = c->sent_seq++;
    size_t slot = (size_t)(seq % (uint64_t)cfg.pipeline);
    char *line = c->lines + slot * s;
    gen_line(line, c->id, seq);
    c->ts[slot] = now;
    if (c->out_len + s + 2 > c->out_cap) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + s + 2 > c->out_cap) die("internal: output buffer overflow");
    }
    memcpy(c->out + c->out_len, line, s);
    c->out[c->out_len + s] = '\r';
    c->out[c->out_len + s + 1] = '\n';
    c->out_len += s + 2;
}

static void fill_pipeline(struct conn *c, uint64_t now) {
    while (c->sent_seq - c->recv_seq < (uint64_t)cfg.pipeline) queue_line(c, now);
}

static void show(FILE *f, const char *p, size_t n) {
    for (size_t i = 0; i < n && i < 80; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r') fputs("\\r", f);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch < 32 || ch >= 127) fprintf(f, "\\x%02x", ch);
        else fputc(ch, f);
    }
    if (n > 80) fputs("...", f);
}

static void mismatch(const struct conn *c, size_t pos, const char *got, size_t m, const char *exp) {
    size_t k = 0;
    while (k < m && got[k] == exp[k]) k++;
    fprintf(stderr,
            "loadgen: MISMATCH on connection %u, reply #%llu, byte %zu of the reply\n"
            "  expected: \"",
            c->id, (unsigned long long)c->recv_seq, pos + k);
    show(stderr, exp + k, m - k);
    fputs("\"\n  received: \"", stderr);
    show(stderr, got + k, m - k);
    fputs("\"\n  line sent: \"", stderr);
    show(stderr, c->lines + (c->recv_seq % (uint64_t)cfg.pipeline) * (size_t)cfg.size,
         (size_t)cfg.size);
    fputs("\"\n", stderr);
    fflush(stderr);
    _exit(2);
}

/* Returns the number of replies completed. */
static uint64_t on_readable(struct conn *c, struct stats *st, uint64_t now, int *pinged) {
    ssize_t n = recv_some(c->fd, rbuf, RBUF_SIZE);
    if (n == 0)
        die("connection %u: server closed the connection (%llu lines sent, %llu replies received)",
            c->id, (unsigned long long)c->sent_seq, (unsigned long long)c->recv_seq);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        die("connection %u: recv: %s", c->id, strerror(errno));
    }
    st->bytes_received += (uint64_t)n;
    size_t s = (size_t)cfg.size;
    size_t rlen = PREFIX_LEN + s + 2;
    size_t i = 0, len = (size_t)n;
    uint64_t done = 0;
    while (i < len) {
        if (c->recv_seq >= c->sent_seq) {
            fprintf(stderr, "loadgen: connection %u: %zu unexpected bytes with no line in flight: \"",
                    c->id, len - i);
            show(stderr, rbuf + i, len - i);
            fputs("\"\n", stderr);
            fflush(stderr);
            _exit(2);
        }
        const char *line = c->lines + (c->recv_seq % (uint64_t)cfg.pipeline) * s;
        size_t pos = c->rpos;
        while (pos < rlen && i < len) {
            const char *exp;
            size_t seg;
            if (pos < PREFIX_LEN) {
                exp = PREFIX + pos;
                seg = PREFIX_LEN - pos;
            } else if (pos < PREFIX_LEN + s) {
                exp = line + (pos - PREFIX_LEN);
                seg = PREFIX_LEN + s - pos;
            } else {
                exp = "\r\n" + (pos - PREFIX_LEN - s);
                seg = rlen - pos;
            }
            size_t m = seg < len - i ? seg : len - i;
            if (memcmp(rbuf + i, exp, m) != 0) mismatch(c, pos, rbuf + i, m, exp);
            pos += m;
            i += m;
        }
        c->rpos = pos;
        if (pos == rlen) {
            uint64_t seq = c->recv_seq++;
            c->rpos = 0;
            done++;
            if (c->state == ST_PINGING) {
                c->state = ST_READY;
                (*pinged)++;
            } else if ((c->state == ST_RUNNING || c->state == ST_DRAINING) &&
                       now >= sh->measure_start_ns && now < sh->measure_end_ns) {
                uint64_t lat = (now - c->ts[seq % (uint64_t)cfg.pipeline]) / 1000;
                st->round_trips++;
                st->lat_sum_us += lat;
                if (lat > st->lat_max_us) st->lat_max_us = lat;
                st->hist[hist_index(lat)]++;
            }
        }
    }
    return done;
}

static void start_connect(int ep, struct conn *c) {
    c->fd = start_connect_fd(ep, &addr, cfg.host, cfg.port, c, 0);
    c->state = ST_CONNECTING;
    c->want_out = 1;
}

static void handle_event(int ep, struct epoll_event *e, struct stats *st, uint64_t now,
                         int *pinged, int refill) {
    struct conn *c = e->data.ptr;
    if (c->state == ST_CONNECTING) {
        check_connected(c->fd, cfg.host, cfg.port);
        if (!(e->events & EPOLLOUT)) return;
        c->state = ST_PINGING;
        queue_line(c, now);
        flush_out(ep, c, st);
        return;
    }
    if (e->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        uint64_t done = on_readable(c, st, now, pinged);
        if (done && refill && c->state == ST_RUNNING) fill_pipeline(c, now);
    }
    if (c->out_off < c->out_len || (e->events & EPOLLOUT)) flush_out(ep, c, st);
}

static void worker(int idx, long first_id, long n) {
    worker_idx = idx;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    struct stats *st = &sh->st[idx];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));
    struct conn *conns = calloc((size_t)n, sizeof *conns);
    rbuf = malloc(RBUF_SIZE);
    if (!conns || !rbuf) die("out of memory");
    size_t s = (size_t)cfg.size, p = (size_t)cfg.pipeline;
    for (long i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        c->fd = -1;
        c->id = (uint32_t)(first_id + i);
        c->out_cap = p * (s + 2);
        c->out = malloc(c->out_cap);
        c->lines = malloc(p * s);
        c->ts = calloc(p, sizeof *c->ts);
        if (!c->out || !c->lines || !c->ts) die("out of memory");
    }
    struct epoll_event evs[MAX_EVENTS];

    /* Establish: at most max_pending connections connecting or pinging. */
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(cfg.connect_timeout * 1e9);
    long opened = 0;
    int ready = 0;
    while (ready < n) {
        while (opened < n && opened - ready < cfg.max_pending) start_connect(ep, &conns[opened++]);
        uint64_t now = now_ns();
        if (now >= deadline)
            die("only %d of %ld connections established after %.0f s", ready, n,
                cfg.connect_timeout);
        int k = epoll_wait(ep, evs, MAX_EVENTS, ms_until(now, deadline, 100));
        if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        now = now_ns();
        for (int i = 0; i < k; i++) handle_event(ep, &evs[i], st, now, &ready, 0);
    }
    __atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);

    if (cfg.idle) {
        uint64_t hard = now_ns() + (uint64_t)((cfg.hold + 60.0) * 1e9);
        while (!__atomic_load_n(&sh->stop, __ATOMIC_SEQ_CST)) {
            uint64_t now = now_ns();
            if (now >= hard) die("idle hold exceeded its time bound");
            int k = epoll_wait(ep, evs, MAX_EVENTS, 50);
            if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
            now = now_ns();
            for (int i = 0; i < k; i++) handle_event(ep, &evs[i], st, now, &ready, 0);
        }
        for (long i = 0; i < n; i++) close(conns[i].fd);
        _exit(0);
    }

    /* Wait until every worker is ready; the last one sets the clock. */
    uint64_t wait_deadline = now_ns() + (uint64_t)(cfg.connect_timeout * 1e9);
    while (!__atomic_load_n(&sh->start_ns, __ATOMIC_SEQ_CST)) {
        if (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) == cfg.procs) {
            int expected = 0;
            uint64_t start = now_ns() + 1000000; /* 1 ms from now */
            if (__atomic_compare_exchange_n(&sh->claimed, &expected, 1, 0, __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST)) {
                sh->established_ns = start - t0;
                sh->measure_start_ns = start + (uint64_t)(cfg.warmup * 1e9);
                sh->measure_end_ns = sh->measure_start_ns + (uint64_t)(cfg.duration * 1e9);
                __atomic_store_n(&sh->start_ns, start, __ATOMIC_SEQ_CST);
            }
            continue;
        }
        if (now_ns() >= wait_deadline) die("other workers did not become ready");
        int k = epoll_wait(ep, evs, MAX_EVENTS, 1);
        if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        uint64_t now = now_ns();
        for (int i = 0; i < k; i++) handle_event(ep, &evs[i], st, now, &ready, 0);
    }
    uint64_t start = __atomic_load_n(&sh->start_ns, __ATOMIC_SEQ_CST);
    uint64_t mstart = sh->measure_start_ns, mend = sh->measure_end_ns;
    while (now_ns() < start) {
    }

    uint64_t now = now_ns();
    for (long i = 0; i < n; i++) {
        conns[i].state = ST_RUNNING;
        fill_pipeline(&conns[i], now);
        flush_out(ep, &conns[i], st);
    }
    int started = 0;
    uint64_t cpu0 = 0;
    while (now < mend) {
        uint64_t next = (!started && now < mstart) ? mstart : mend;
        int k = epoll_wait(ep, evs, MAX_EVENTS, ms_until(now, next, 100));
        if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        now = now_ns();
        if (!started && now >= mstart) {
            started = 1;
            cpu0 = cpu_now_us();
            if (idx == 0) emit_event("measure_start");
        }
        for (int i = 0; i < k; i++) handle_event(ep, &evs[i], st, now, &ready, 1);
    }
    if (!started) {
        cpu0 = cpu_now_us();
        if (idx == 0) emit_event("measure_start");
    }
    st->cpu_us = cpu_now_us() - cpu0;
    if (idx == 0) emit_event("measure_end");

    /* Drain: stop sending, wait for every outstanding reply. */
    long outstanding = 0;
    for (long i = 0; i < n; i++) {
        conns[i].state = ST_DRAINING;
        if (conns[i].recv_seq < conns[i].sent_seq) outstanding++;
    }
    uint64_t drain_deadline = now_ns() + (uint64_t)(cfg.drain_timeout * 1e9);
    while (outstanding > 0) {
        now = now_ns();
        if (now >= drain_deadline) {
            uint64_t missing = 0;
            for (long i = 0; i < n; i++) missing += conns[i].sent_seq - conns[i].recv_seq;
            die("%llu replies still missing %.0f s after the run ended",
                (unsigned long long)missing, cfg.drain_timeout);
        }
        int k = epoll_wait(ep, evs, MAX_EVENTS, ms_until(now, drain_deadline, 100));
        if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        now = now_ns();
        for (int i = 0; i < k; i++) handle_event(ep, &evs[i], st, now, &ready, 0);
        outstanding = 0;
        for (long i = 0; i < n; i++)
            if (conns[i].recv_seq < conns[i].sent_seq) outstanding++;
    }
    for (long i = 0; i < n; i++) close(conns[i].fd);
    _exit(0);
}

static void usage(FILE *f) {
    fputs("usage: loadgen --port PORT [--host 127.0.0.1] [-c CONNS] [-P IN_FLIGHT] [-s LINE_BYTES]\n"
          "               [-d SECONDS] [-w WARMUP_SECONDS] [-j PROCS] [--max-pending N]\n"
          "               [--connect-timeout S] [--drain-timeout S]\n"
          "       loadgen --idle --port PORT -c CONNS [-j PROCS] [--hold SECONDS]\n"
          "Load mode prints one JSON line with round trips, round trips/s and latency (us).\n"
          "Idle mode prints {\"event\":\"ready\"} once every connection has done one round\n"
          "trip, then holds them until stdin reaches EOF, SIGTERM/SIGINT, or --hold seconds.\n",
          f);
}

static void kill_all(pid_t *pids, long n) {
    for (long i = 0; i < n; i++)
        if (pids[i] > 0) kill(pids[i], SIGTERM);
    for (long i = 0; i < n; i++)
        if (pids[i] > 0) waitpid(pids[i], NULL, 0);
}

/* Reap any exited worker; returns -1 if one failed, else the number reaped. */
static int reap(pid_t *pids, long n, int block) {
    int reaped = 0;
    for (long i = 0; i < n; i++) {
        if (pids[i] <= 0) continue;
        int status;
        pid_t r = waitpid(pids[i], &status, block ? 0 : WNOHANG);
        if (r == 0) continue;
        if (r < 0 && errno == EINTR) {
            i--;
            continue;
        }
        pids[i] = 0;
        reaped++;
        if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (r > 0 && WIFSIGNALED(status))
                fprintf(stderr, "loadgen: worker %ld killed by signal %d\n", i,
                        WTERMSIG(status));
            return -1;
        }
    }
    return reaped;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"connections", required_argument, 0, 'c'},
        {"pipeline", required_argument, 0, 'P'},
        {"size", required_argument, 0, 's'},
        {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},
        {"procs", required_argument, 0, 'j'},
        {"idle", no_argument, 0, 'i'},
        {"hold", required_argument, 0, 't'},
        {"max-pending", required_argument, 0, 'b'},
        {"connect-timeout", required_argument, 0, 'T'},
        {"drain-timeout", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "H:p:c:P:s:d:w:j:it:b:T:D:h", opts, NULL)) != -1) {
        switch (o) {
        case 'H': cfg.host = optarg; break;
        case 'p': cfg.port = (int)parse_long(optarg, "port", 1, 65535); break;
        case 'c': cfg.conns = parse_long(optarg, "connections", 1, 1000000); break;
        case 'P': cfg.pipeline = parse_long(optarg, "pipeline", 1, 65536); break;
        case 's': cfg.size = parse_long(optarg, "line size", 1, 16 * 1024 * 1024); break;
        case 'd': cfg.duration = parse_double(optarg, "duration", 0.001, 86400); break;
        case 'w': cfg.warmup = parse_double(optarg, "warm-up", 0, 86400); break;
        case 'j': cfg.procs = parse_long(optarg, "procs", 1, MAX_PROCS); break;
        case 'i': cfg.idle = 1; break;
        case 't': cfg.hold = parse_double(optarg, "hold", 0, 86400); break;
        case 'b': cfg.max_pending = parse_long(optarg, "max-pending", 1, 1000000); break;
        case 'T': cfg.connect_timeout = parse_double(optarg, "connect timeout", 0.1, 3600); break;
        case 'D': cfg.drain_timeout = parse_double(optarg, "drain timeout", 0.1, 3600); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || cfg.port == 0) {
        usage(stderr);
        return 2;
    }
    if (cfg.procs > cfg.conns) cfg.procs = cfg.conns;
    if (ipv4_address(&addr, cfg.host, cfg.port) < 0) return 2;

    /* Raise the open-file limit to what the connections need. */
    rlim_t need = (rlim_t)(cfg.conns / cfg.procs + 1 + 64);
    rlim_t limit = raise_nofile(need);
    if (limit < need) {
        fprintf(stderr,
                "loadgen: need %llu open files per process but the limit is %llu "
                "(raise ulimit -n or use more --procs)\n",
                (unsigned long long)need, (unsigned long long)limit);
        return 2;
    }

    filler = make_filler((size_t)cfg.size + 64);

    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) die("mmap: %s", strerror(errno));
    memset(sh, 0, sizeof *sh);

    install_signals();

    pid_t pids[MAX_PROCS] = {0};
    long first = 0;
    uint64_t t0 = now_ns();
    fflush(stdout);
    for (long w = 0; w < cfg.procs; w++) {
        long n = cfg.conns / cfg.procs + (w < cfg.conns % cfg.procs ? 1 : 0);
        pid_t pid = fork();
        if (pid < 0) {
            perror("loadgen: fork");
            kill_all(pids, w);
            return 2;
        }
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            worker((int)w, first, n);
        }
        pids[w] = pid;
        first += n;
    }

    if (cfg.idle) {
        int announced = 0;
        int stdin_open = 1;
        uint64_t hold_deadline = 0;
        uint64_t hard = t0 + (uint64_t)((cfg.connect_timeout + cfg.hold + 30.0) * 1e9);
        for (;;) {
            if (reap(pids, cfg.procs, 0) < 0) {
                kill_all(pids, cfg.procs);
                fprintf(stderr, "loadgen: a worker failed\n");
                return 2;
            }
            uint64_t now = now_ns();
            if (now >= hard) {
                kill_all(pids, cfg.procs);
                fprintf(stderr, "loadgen: idle mode exceeded its time bound\n");
                return 2;
            }
            if (!announced && __atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) == cfg.procs) {
                announced = 1;
                hold_deadline = now + (uint64_t)(cfg.hold * 1e9);
                printf("{\"event\":\"ready\",\"mode\":\"idle\",\"connections\":%ld,"
                       "\"procs\":%ld,\"establish_s\":%.3f}\n",
                       cfg.conns, cfg.procs, (double)(now - t0) / 1e9);
                fflush(stdout);
            }
            if (got_signal || (announced && now >= hold_deadline)) break;
            struct pollfd pfd = {0, POLLIN, 0};
            int r = poll(&pfd, stdin_open ? 1 : 0, 20);
            if (r > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
                char tmp[256];
                ssize_t k = read(0, tmp, sizeof tmp);
                if (k <= 0) {
                    stdin_open = 0;
                    if (announced) break;
                }
            }
            if (!stdin_open && announced) break;
        }
        __atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
        if (reap(pids, cfg.procs, 1) < 0) {
            fprintf(stderr, "loadgen: a worker failed while closing\n");
            return 2;
        }
        printf("{\"event\":\"released\"}\n");
        fflush(stdout);
        return 0;
    }

    /* Load mode: wait for all workers (each has its own time bounds). */
    for (;;) {
        int r = reap(pids, cfg.procs, 0);
        if (r < 0) {
            kill_all(pids, cfg.procs);
            fprintf(stderr, "loadgen: a worker failed\n");
            return 2;
        }
        int left = 0;
        for (long i = 0; i < cfg.procs; i++) left += pids[i] > 0;
        if (!left) break;
        if (got_signal) {
            kill_all(pids, cfg.procs);
            fprintf(stderr, "loadgen: interrupted\n");
            return 2;
        }
        usleep(5000);
    }

    struct stats *tot = calloc(1, sizeof *tot);
    if (!tot) die("out of memory");
    for (long w = 0; w < cfg.procs; w++) {
        struct stats *s = &sh->st[w];
        tot->round_trips += s->round_trips;
        tot->lat_sum_us += s->lat_sum_us;
        if (s->lat_max_us > tot->lat_max_us) tot->lat_max_us = s->lat_max_us;
        tot->bytes_sent += s->bytes_sent;
        tot->bytes_received += s->bytes_received;
        tot->cpu_us += s->cpu_us;
        for (int i = 0; i < HIST_SIZE; i++) tot->hist[i] += s->hist[i];
    }
    double secs = (double)(sh->measure_end_ns - sh->measure_start_ns) / 1e9;
    uint64_t n = tot->round_trips;
    printf("{\"mode\":\"load\",\"host\":\"%s\",\"port\":%d,\"connections\":%ld,\"pipeline\":%ld,"
           "\"line_size\":%ld,\"procs\":%ld,\"warmup_s\":%.3f,\"establish_s\":%.3f,"
           "\"seconds\":%.3f,\"round_trips\":%llu,\"round_trips_per_s\":%.1f,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"max_us\":%llu,\"mean_us\":%.1f,\"bytes_sent\":%llu,\"bytes_received\":%llu,"
           "\"cpu_s\":%.3f}\n",
           cfg.host, cfg.port, cfg.conns, cfg.pipeline, cfg.size, cfg.procs, cfg.warmup,
           (double)sh->established_ns / 1e9, secs, (unsigned long long)n,
           secs > 0 ? (double)n / secs : 0.0, percentile(tot->hist, n, 0.50),
           percentile(tot->hist, n, 0.90), percentile(tot->hist, n, 0.99),
           percentile(tot->hist, n, 0.999), (unsigned long long)tot->lat_max_us,
           n ? (double)tot->lat_sum_us / (double)n : 0.0, (unsigned long long)tot->bytes_sent,
           (unsigned long long)tot->bytes_received, (double)tot->cpu_us / 1e6);
    fflush(stdout);
    if (n == 0) {
        fprintf(stderr, "loadgen: no round trip completed in the measured window\n");
        return 3;
    }
    return 0;
}

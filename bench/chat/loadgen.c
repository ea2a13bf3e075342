/*
 * chat loadgen: epoll fan-out load generator for IRC servers.
 *
 * Fan-out mode (default): N clients register (NICK/USER, wait for 001), join
 * one channel (wait for 366, the end of NAMES), and once every client has
 * joined, T of them (the "talkers", clients 0..T-1) send PRIVMSG lines to the
 * channel for a warm-up of W seconds and a measured window of D seconds.
 * Every line's text is exactly L bytes:
 *
 *     <talker>.<seq>.<send time, ns, CLOCK_MONOTONIC>.<filler>
 *
 * Every other client counts the PRIVMSG lines it receives, per sender: a
 * sequence number lower than the next expected one is "reordered"; at the end
 * every (receiver, talker) pair must have received every line the talker sent
 * (else "lost"); a text of the wrong length or filler is "corrupt". Delivery
 * latency (receive time - send time in the text) goes into a histogram for the
 * lines sent inside the measured window; "deliveries" are the PRIVMSG lines
 * received inside it. Every client answers PING with PONG.
 *
 * Rate: --rate R sends R lines per second per talker (steady); --rate 0 (the
 * default) sends as fast as the window allows. Window: a talker never has
 * more than --window lines that some receiver has not yet received, so the
 * server's buffers stay bounded (ngircd, for one, drops a client whose input
 * buffer passes 2 KiB) and the measure is the server's, not a queue's.
 *
 * Slow consumer: --slow K makes the last K clients stop reading once everyone
 * has joined (with a small socket receive buffer, so the server feels it at
 * once). They are left out of every count; the server may disconnect them:
 * at the end, what it kept for them is read, and "slow_dropped" counts those
 * it closed.
 *
 * Flood controls: servers run with theirs off; ngircd still caps how many
 * commands it parses per read unless the user has mode +F, which only an
 * IRC operator may set: --oper NAME:PASS makes each talker send OPER and,
 * with --talker-mode +F, set that mode before joining.
 *
 * Idle mode (--idle): N clients register (001), print {"event":"ready"} and
 * hold the connections (answering PING) until stdin reaches EOF, SIGTERM or
 * --hold seconds.
 *
 * At most --max-pending clients (default 8) are connecting or registering at
 * once: ngircd listens with a backlog of 10, and connections beyond it can
 * sit unaccepted for tens of seconds.
 *
 * Prints {"event":"measure_start"} / {"event":"measure_end"} at the edges of
 * the measured window so that a driver can sample server CPU time over it,
 * then one JSON line of results. Exit status: 0 all delivered, in order and
 * intact; 1 something lost, reordered or corrupt (the JSON says what);
 * 2 a setup or connection failure (stderr says why).
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_NAME "chat loadgen"
static void die(const char *fmt, ...);
#include "../loadgen_common.h"

#define MAX_EVENTS 512
#define RBUF_SIZE (64 * 1024)
#define OBUF_SIZE (64 * 1024)
#define MAX_LINE 1024

enum { ST_CONNECTING, ST_REGISTERING, ST_OPERING, ST_JOINING, ST_JOINED, ST_SILENT };

struct conn {
    int fd;
    int state;
    uint32_t id;
    int want_out;
    int talker; /* index among talkers, or -1 */
    int slow;
    char *in;      /* partial line carried between reads */
    size_t in_len; /* bytes in `in` */
    char *out;
    size_t out_off, out_len;
    uint64_t *next_seq; /* per talker: the next sequence number expected */
    uint64_t *count;    /* per talker: lines received */
};

static struct {
    const char *host;
    int port;
    long clients;
    long talkers;
    long size;
    double duration;
    double warmup;
    double rate;
    long window;
    long slow;
    long slow_rcvbuf;
    const char *channel;
    const char *oper;
    const char *talker_mode;
    int idle;
    double hold;
    long max_pending;
    double connect_timeout;
    double drain_timeout;
} cfg = {"127.0.0.1", 0, 200, 4, 64, 5.0, 1.0, 0.0, 16, 0, 4096,
         "#bench", NULL, NULL, 0, 300.0, 8, 60.0, 10.0};

static struct conn *conns;
static char *rbuf;
static char *filler;
static struct sockaddr_in addr;
static int ep;

/* Talkers: what was sent, and the ring of receipt counts for the window. */
static uint64_t *sent;      /* per talker */
static uint64_t *done;      /* per talker: every line below this reached every receiver */
static uint32_t *acked;     /* talkers x window: receivers that got seq (slot seq % window) */
static long receivers;      /* clients that count deliveries from one talker */
static uint64_t measure_start_ns, measure_end_ns, run_start_ns;
static int running; /* talkers are sending */
static uint64_t deliveries_window, deliveries_total, reordered, corrupt, window_full;
static uint64_t errors_seen, pings_answered;
static uint64_t hist[HIST_SIZE], lat_n, lat_sum_us, lat_max_us;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("chat loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    _exit(2);
}

/* Parses a decimal number ended by '.', advancing *p past the dot. */
static int parse_field(const char **p, const char *end, uint64_t *out) {
    const char *s = *p;
    uint64_t v = 0;
    int digits = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        s++;
        digits++;
    }
    if (!digits || digits > 20 || s >= end || *s != '.') return 0;
    *out = v;
    *p = s + 1;
    return 1;
}

static size_t filler_phase(uint64_t talker, uint64_t seq) {
    return (size_t)((seq * 7 + talker * 3) % 26);
}

/* -- output ---------------------------------------------------------------- */

static void set_events(struct conn *c, int want_out) {
    epoll_want(ep, c->fd, c, want_out);
    c->want_out = want_out;
}

static void flush_out(struct conn *c) {
    uint64_t sent_bytes = 0;
    if (send_pending(c->fd, c->out, &c->out_off, c->out_len, &sent_bytes) < 0) {
        if (c->slow) return; /* the server may drop a slow consumer */
        die("client %u: send: %s", c->id, errno ? strerror(errno) : "returned 0");
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->want_out) set_events(c, 0);
    } else if (!c->want_out) {
        set_events(c, 1);
    }
}

static char *out_reserve(struct conn *c, size_t n) {
    if (c->out_len + n > OBUF_SIZE) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + n > OBUF_SIZE) return NULL;
    }
    char *p = c->out + c->out_len;
    c->out_len += n;
    return p;
}

static void queue_str(struct conn *c, const char *fmt, ...) {
    char tmp[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) die("internal: command too long");
    char *p = out_reserve(c, (size_t)n);
    if (!p) die("client %u: output buffer full", c->id);
    memcpy(p, tmp, (size_t)n);
}

/* One PRIVMSG from talker t; returns 0 if the output buffer is full. */
static int queue_privmsg(struct conn *c, uint64_t now) {
    uint64_t t = (uint64_t)c->talker;
    size_t chl = strlen(cfg.channel);
    size_t s = (size_t)cfg.size;
    size_t total = 8 + chl + 2 + s + 2;
    char *p = out_reserve(c, total);
    if (!p) return 0;
    uint64_t seq = sent[t];
    memcpy(p, "PRIVMSG ", 8);
    memcpy(p + 8, cfg.channel, chl);
    memcpy(p + 8 + chl, " :", 2);
    char *text = p + 10 + chl;
    char hdr[80];
    int h = utoa(hdr, t);
    hdr[h++] = '.';
    h += utoa(hdr + h, seq);
    hdr[h++] = '.';
    h += utoa(hdr + h, now);
    hdr[h++] = '.';
    if ((size_t)h > s) die("--size %ld is too small for the header (%d bytes)", cfg.size, h);
    memcpy(text, hdr, (size_t)h);
    memcpy(text + h, filler + filler_phase(t, seq) + (size_t)h, s - (size_t)h);
    text[s] = '\r';
    text[s + 1] = '\n';
    sent[t] = seq + 1;
    return 1;
}

/* -- input ----------------------------------------------------------------- */

static void show_line(const char *p, size_t n) {
    for (size_t i = 0; i < n && i < 200; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 32 || ch >= 127) fprintf(stderr, "\\x%02x", ch);
        else fputc(ch, stderr);
    }
}

static void on_privmsg(struct conn *c, const char *text, const char *end, uint64_t now) {
    const char *p = text;
    uint64_t t, seq, ts;
    if ((size_t)(end - text) != (size_t)cfg.size || !parse_field(&p, end, &t) ||
        !parse_field(&p, end, &seq) || !parse_field(&p, end, &ts) || t >= (uint64_t)cfg.talkers ||
        seq >= sent[t] ||
        memcmp(p, filler + filler_phase(t, seq) + (size_t)(p - text), (size_t)(end - p)) != 0) {
        if (corrupt++ < 5) {
            fprintf(stderr, "chat loadgen: client %u: corrupt PRIVMSG text: \"", c->id);
            show_line(text, (size_t)(end - text));
            fputs("\"\n", stderr);
        }
        return;
    }
    if (c->slow) return;
    deliveries_total++;
    if (now >= measure_start_ns && now < measure_end_ns) deliveries_window++;
    if (seq < c->next_seq[t]) {
        reordered++;
    } else {
        c->next_seq[t] = seq + 1;
    }
    c->count[t]++;
    if (ts >= measure_start_ns && ts < measure_end_ns && now >= ts) {
        uint64_t lat = (now - ts) / 1000;
        hist[hist_index(lat)]++;
        lat_n++;
        lat_sum_us += lat;
        if (lat > lat_max_us) lat_max_us = lat;
    }
    /* The window: count this receipt; advance past lines everyone has. */
    uint32_t *ring = acked + t * (uint64_t)cfg.window;
    if (seq >= done[t]) {
        ring[seq % (uint64_t)cfg.window]++;
        while (done[t] < sent[t] && ring[done[t] % (uint64_t)cfg.window] >= (uint32_t)receivers) {
            ring[done[t] % (uint64_t)cfg.window] = 0;
            done[t]++;
        }
    }
}

static int registered, joined;

static void after_join(struct conn *c) {
    c->state = ST_JOINED;
    joined++;
}

static void send_join(struct conn *c) {
    queue_str(c, "JOIN %s\r\n", cfg.channel);
    c->state = ST_JOINING;
}

/* The numeric or command of a server line; *rest points after it. */
static void on_line(struct conn *c, const char *line, size_t n, uint64_t now) {
    const char *end = line + n;
    const char *p = line;
    if (n && *p == ':') {
        p = memchr(p, ' ', n);
        if (!p) return;
        p++;
    }
    size_t left = (size_t)(end - p);
    if (left > 8 && memcmp(p, "PRIVMSG ", 8) == 0) {
        const char *q = memchr(p + 8, ' ', left - 8);
        if (q && q + 1 < end && q[1] == ':') on_privmsg(c, q + 2, end, now);
        return;
    }
    if (left >= 4 && memcmp(p, "PING", 4) == 0) {
        queue_str(c, "PONG%.*s\r\n", (int)(left - 4 > 500 ? 500 : left - 4), p + 4);
        pings_answered++;
        return;
    }
    if (left >= 5 && memcmp(p, "ERROR", 5) == 0) {
        if (c->slow) return;
        fprintf(stderr, "chat loadgen: client %u got: ", c->id);
        show_line(line, n);
        fputc('\n', stderr);
        die("the server closed client %u", c->id);
    }
    if (left >= 4 && p[0] >= '0' && p[0] <= '9' && p[3] == ' ') {
        int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        if (code == 1 && c->state == ST_REGISTERING) {
            registered++;
            if (cfg.idle) {
                c->state = ST_JOINED;
            } else if (c->talker >= 0 && cfg.oper) {
                const char *colon = strchr(cfg.oper, ':');
                queue_str(c, "OPER %.*s %s\r\n", (int)(colon - cfg.oper), cfg.oper, colon + 1);
                c->state = ST_OPERING;
            } else {
                send_join(c);
            }
        } else if (code == 381 && c->state == ST_OPERING) {
            if (cfg.talker_mode) queue_str(c, "MODE b%u %s\r\n", c->id, cfg.talker_mode);
            send_join(c);
        } else if (code == 366 && c->state == ST_JOINING) {
            after_join(c);
        } else if (code >= 400 && code < 600 && code != 422) { /* 422: no MOTD, not an error */
            if (c->state != ST_JOINED || errors_seen < 5) {
                fprintf(stderr, "chat loadgen: client %u got: ", c->id);
                show_line(line, n);
                fputc('\n', stderr);
            }
            errors_seen++;
            if (c->state != ST_JOINED) die("client %u: error reply during set-up", c->id);
        }
    }
}

static void close_silent(struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    c->state = ST_SILENT;
}

static void on_readable(struct conn *c, uint64_t now) {
    ssize_t n = recv_some(c->fd, rbuf, RBUF_SIZE);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (c->slow) {
            close_silent(c);
            return;
        }
        if (n == 0) die("client %u: the server closed the connection (state %d)", c->id, c->state);
        die("client %u: recv: %s", c->id, strerror(errno));
    }
    const char *p = rbuf, *end = rbuf + n;
    if (c->in_len) { /* finish the carried line */
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = nl ? (size_t)(nl - p + 1) : (size_t)(end - p);
        if (c->in_len + take > MAX_LINE) die("client %u: a server line over %d bytes", c->id, MAX_LINE);
        memcpy(c->in + c->in_len, p, take);
        c->in_len += take;
        p += take;
        if (!nl) return;
        size_t len = c->in_len - 1;
        if (len && c->in[len - 1] == '\r') len--;
        on_line(c, c->in, len, now);
        c->in_len = 0;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            size_t rest = (size_t)(end - p);
            if (rest > MAX_LINE) die("client %u: a server line over %d bytes", c->id, MAX_LINE);
            memcpy(c->in, p, rest);
            c->in_len = rest;
            break;
        }
        size_t len = (size_t)(nl - p);
        if (len && p[len - 1] == '\r') len--;
        on_line(c, p, len, now);
        p = nl + 1;
    }
}

static void start_connect(struct conn *c) {
    int rcvbuf = c->slow && cfg.slow_rcvbuf > 0 ? (int)cfg.slow_rcvbuf : 0;
    c->fd = start_connect_fd(ep, &addr, cfg.host, cfg.port, c, rcvbuf);
    c->state = ST_CONNECTING;
    c->want_out = 1;
}

static void handle_event(struct epoll_event *e, uint64_t now) {
    struct conn *c = e->data.ptr;
    if (c->state == ST_SILENT) return;
    if (c->state == ST_CONNECTING) {
        check_connected(c->fd, cfg.host, cfg.port);
        if (!(e->events & EPOLLOUT)) return;
        c->state = ST_REGISTERING;
        queue_str(c, "NICK b%u\r\nUSER b%u 0 * :chat bench\r\n", c->id, c->id);
        flush_out(c);
        return;
    }
    if (e->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, now);
    if (c->state != ST_SILENT && (c->out_off < c->out_len || (e->events & EPOLLOUT))) flush_out(c);
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[MAX_EVENTS];
    int k = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms);
    if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    uint64_t now = now_ns();
    for (int i = 0; i < k; i++) handle_event(&evs[i], now);
}

/* Talkers send what the rate and the window allow. */
static void talk(uint64_t now) {
    for (long t = 0; t < cfg.talkers; t++) {
        struct conn *c = &conns[t];
        uint64_t room = (uint64_t)cfg.window - (sent[t] - done[t]);
        uint64_t want = room;
        if (cfg.rate > 0) {
            uint64_t due = (uint64_t)((double)(now - run_start_ns) * cfg.rate / 1e9) + 1;
            want = due > sent[t] ? due - sent[t] : 0;
            if (want > room) {
                window_full++;
                want = room;
            }
        }
        int queued = 0;
        for (uint64_t i = 0; i < want; i++) {
            if (!queue_privmsg(c, now)) break;
            queued = 1;
        }
        if (queued) flush_out(c);
    }
}

/* A slow consumer at the end: read what the server kept for it. Dropped if
 * that ends in EOF or a reset (a server closes gracefully behind the queued
 * bytes, so only reading them shows it); still connected if the server
 * stays silent for a second. */
static int slow_was_dropped(struct conn *c, uint64_t deadline) {
    uint64_t quiet_since = now_ns();
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline || now - quiet_since >= 1000000000ull) return 0;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0) continue;
        ssize_t n = recv(c->fd, rbuf, RBUF_SIZE, MSG_DONTWAIT);
        if (n == 0) return 1;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
            return 1; /* reset */
        }
        quiet_since = now_ns();
    }
}

/* -- driver ---------------------------------------------------------------- */

static void establish(void) {
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(cfg.connect_timeout * 1e9);
    long opened = 0;
    long want = cfg.clients;
    for (;;) {
        int settled = cfg.idle ? registered : joined;
        if (settled >= want) break;
        while (opened < want && opened - settled < cfg.max_pending) start_connect(&conns[opened++]);
        uint64_t now = now_ns();
        if (now >= deadline)
            die("only %d of %ld clients %s after %.0f s", settled, want,
                cfg.idle ? "registered" : "joined", cfg.connect_timeout);
        if (got_signal) die("interrupted");
        poll_once(ms_until(now, deadline, 100));
    }
}

static void usage(FILE *f) {
    fputs("usage: loadgen --port PORT [--host 127.0.0.1] [-n CLIENTS] [-t TALKERS] [-s TEXT_BYTES]\n"
          "               [-d SECONDS] [-w WARMUP] [--rate LINES_PER_S] [--window LINES]\n"
          "               [--slow K] [--channel #NAME] [--oper NAME:PASS] [--talker-mode +F]\n"
          "               [--max-pending N] [--connect-timeout S] [--drain-timeout S]\n"
          "       loadgen --idle --port PORT -n CLIENTS [--hold SECONDS]\n"
          "Fan-out mode prints one JSON line: deliveries, lost, reordered, corrupt, latency (us).\n"
          "Idle mode prints {\"event\":\"ready\"} once every client is registered, then holds\n"
          "them until stdin reaches EOF, SIGTERM/SIGINT, or --hold seconds.\n",
          f);
}

static int run_idle(uint64_t t0) {
    printf("{\"event\":\"ready\",\"mode\":\"idle\",\"clients\":%ld,\"establish_s\":%.3f}\n",
           cfg.clients, (double)(now_ns() - t0) / 1e9);
    fflush(stdout);
    uint64_t hold_deadline = now_ns() + (uint64_t)(cfg.hold * 1e9);
    int stdin_open = 1;
    while (!got_signal && now_ns() < hold_deadline) {
        struct pollfd pfd = {0, POLLIN, 0};
        if (stdin_open && poll(&pfd, 1, 0) > 0) {
            char tmp[256];
            if (read(0, tmp, sizeof tmp) <= 0) break;
        }
        poll_once(20);
    }
    for (long i = 0; i < cfg.clients; i++) close(conns[i].fd);
    printf("{\"event\":\"released\"}\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"clients", required_argument, 0, 'n'},
        {"talkers", required_argument, 0, 't'},
        {"size", required_argument, 0, 's'},
        {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},
        {"rate", required_argument, 0, 'r'},
        {"window", required_argument, 0, 'W'},
        {"slow", required_argument, 0, 'S'},
        {"slow-rcvbuf", required_argument, 0, 'R'},
        {"channel", required_argument, 0, 'c'},
        {"oper", required_argument, 0, 'o'},
        {"talker-mode", required_argument, 0, 'm'},
        {"idle", no_argument, 0, 'i'},
        {"hold", required_argument, 0, 'h' + 256},
        {"max-pending", required_argument, 0, 'b'},
        {"connect-timeout", required_argument, 0, 'T'},
        {"drain-timeout", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "H:p:n:t:s:d:w:r:W:S:c:o:m:ib:T:D:h", opts, NULL)) != -1) {
        switch (o) {
        case 'H': cfg.host = optarg; break;
        case 'p': cfg.port = (int)parse_long(optarg, "port", 1, 65535); break;
        case 'n': cfg.clients = parse_long(optarg, "clients", 1, 1000000); break;
        case 't': cfg.talkers = parse_long(optarg, "talkers", 0, 10000); break;
        case 's': cfg.size = parse_long(optarg, "text size", 8, 400); break;
        case 'd': cfg.duration = parse_double(optarg, "duration", 0.001, 86400); break;
        case 'w': cfg.warmup = parse_double(optarg, "warm-up", 0, 86400); break;
        case 'r': cfg.rate = parse_double(optarg, "rate", 0, 1e9); break;
        case 'W': cfg.window = parse_long(optarg, "window", 1, 1000000); break;
        case 'S': cfg.slow = parse_long(optarg, "slow clients", 0, 1000000); break;
        case 'R': cfg.slow_rcvbuf = parse_long(optarg, "slow receive buffer", 0, 1 << 30); break;
        case 'c': cfg.channel = optarg; break;
        case 'o': cfg.oper = optarg; break;
        case 'm': cfg.talker_mode = optarg; break;
        case 'i': cfg.idle = 1; break;
        case 'h' + 256: cfg.hold = parse_double(optarg, "hold", 0, 86400); break;
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
    if (cfg.channel[0] != '#' || strpbrk(cfg.channel, " ,\r\n") || strlen(cfg.channel) > 50) {
        fprintf(stderr, "chat loadgen: --channel must be one #name of at most 50 bytes\n");
        return 2;
    }
    if (cfg.oper && !strchr(cfg.oper, ':')) {
        fprintf(stderr, "chat loadgen: --oper wants NAME:PASS\n");
        return 2;
    }
    if (!cfg.idle && cfg.talkers + cfg.slow + 1 > cfg.clients) {
        fprintf(stderr, "chat loadgen: need at least one receiver besides %ld talkers and %ld slow\n",
                cfg.talkers, cfg.slow);
        return 2;
    }
    if (ipv4_address(&addr, cfg.host, cfg.port) < 0) return 2;
    rlim_t need = (rlim_t)(cfg.clients + 64);
    rlim_t limit = raise_nofile(need);
    if (limit < need) {
        fprintf(stderr, "chat loadgen: need %llu open files but the limit is %llu\n",
                (unsigned long long)need, (unsigned long long)limit);
        return 2;
    }
    install_signals();

    long talkers = cfg.idle ? 0 : cfg.talkers;
    size_t nt = talkers > 0 ? (size_t)talkers : 1;
    filler = make_filler((size_t)cfg.size + 64);
    rbuf = malloc(RBUF_SIZE);
    conns = calloc((size_t)cfg.clients, sizeof *conns);
    sent = calloc(nt, sizeof *sent);
    done = calloc(nt, sizeof *done);
    acked = calloc(nt * (size_t)cfg.window, sizeof *acked);
    if (!filler || !rbuf || !conns || !sent || !done || !acked) die("out of memory");
    for (long i = 0; i < cfg.clients; i++) {
        struct conn *c = &conns[i];
        c->fd = -1;
        c->id = (uint32_t)i;
        c->talker = i < talkers ? (int)i : -1;
        c->slow = !cfg.idle && i >= cfg.clients - cfg.slow;
        c->in = malloc(MAX_LINE);
        c->out = malloc(OBUF_SIZE);
        c->next_seq = calloc(nt, sizeof *c->next_seq);
        c->count = calloc(nt, sizeof *c->count);
        if (!c->in || !c->out || !c->next_seq || !c->count) die("out of memory");
    }
    receivers = cfg.clients - cfg.slow - 1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));

    uint64_t t0 = now_ns();
    establish();
    if (cfg.idle) return run_idle(t0);
    double establish_s = (double)(now_ns() - t0) / 1e9;
    for (long i = cfg.clients - cfg.slow; i < cfg.clients; i++) close_silent(&conns[i]);

    run_start_ns = now_ns();
    measure_start_ns = run_start_ns + (uint64_t)(cfg.warmup * 1e9);
    measure_end_ns = measure_start_ns + (uint64_t)(cfg.duration * 1e9);
    running = 1;
    int started = 0;
    uint64_t cpu0 = 0, cpu_us = 0;
    uint64_t now = now_ns();
    while (now < measure_end_ns) {
        if (got_signal) die("interrupted");
        talk(now);
        int timeout = cfg.rate > 0 ? 1 : 100;
        if (!started) timeout = ms_until(now, measure_start_ns, timeout);
        poll_once(ms_until(now, measure_end_ns, timeout));
        now = now_ns();
        if (!started && now >= measure_start_ns) {
            started = 1;
            cpu0 = cpu_now_us();
            emit_event("measure_start");
        }
    }
    if (!started) {
        cpu0 = cpu_now_us();
        emit_event("measure_start");
    }
    cpu_us = cpu_now_us() - cpu0;
    emit_event("measure_end");
    running = 0;

    /* Drain: no more sending; wait until every receiver has every line. */
    uint64_t drain_deadline = now_ns() + (uint64_t)(cfg.drain_timeout * 1e9);
    for (;;) {
        int pending = 0;
        for (long t = 0; t < talkers; t++)
            if (done[t] < sent[t]) pending = 1;
        now = now_ns();
        if (!pending || now >= drain_deadline || got_signal) break;
        poll_once(ms_until(now, drain_deadline, 100));
    }
    uint64_t total_sent = 0, lost = 0, dup = 0;
    for (long t = 0; t < talkers; t++) total_sent += sent[t];
    for (long i = 0; i < cfg.clients - cfg.slow; i++) {
        for (long t = 0; t < talkers; t++) {
            if (i == t) continue;
            uint64_t got = conns[i].count[t];
            if (got < sent[t]) lost += sent[t] - got;
            else dup += got - sent[t];
        }
    }
    int slow_dropped = 0;
    for (long i = cfg.clients - cfg.slow; i < cfg.clients; i++)
        slow_dropped += slow_was_dropped(&conns[i], now_ns() + (uint64_t)(cfg.drain_timeout * 1e9));
    double secs = (double)(measure_end_ns - measure_start_ns) / 1e9;
    printf("{\"mode\":\"fanout\",\"host\":\"%s\",\"port\":%d,\"clients\":%ld,\"talkers\":%ld,"
           "\"size\":%ld,\"rate\":%.1f,\"window\":%ld,\"slow\":%ld,\"establish_s\":%.3f,"
           "\"seconds\":%.3f,\"sent\":%llu,\"expected\":%llu,\"deliveries\":%llu,"
           "\"deliveries_total\":%llu,\"deliveries_per_s\":%.1f,\"lost\":%llu,"
           "\"duplicated\":%llu,\"reordered\":%llu,\"corrupt\":%llu,\"error_replies\":%llu,"
           "\"window_full\":%llu,\"slow_dropped\":%d,\"pings_answered\":%llu,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%llu,"
           "\"mean_us\":%.1f,\"latency_samples\":%llu,\"cpu_s\":%.3f}\n",
           cfg.host, cfg.port, cfg.clients, talkers, cfg.size, cfg.rate, cfg.window, cfg.slow,
           establish_s, secs, (unsigned long long)total_sent,
           (unsigned long long)(total_sent * (uint64_t)receivers),
           (unsigned long long)deliveries_window, (unsigned long long)deliveries_total,
           secs > 0 ? (double)deliveries_window / secs : 0.0, (unsigned long long)lost,
           (unsigned long long)dup, (unsigned long long)reordered, (unsigned long long)corrupt,
           (unsigned long long)errors_seen, (unsigned long long)window_full, slow_dropped,
           (unsigned long long)pings_answered, percentile(hist, lat_n, 0.50),
           percentile(hist, lat_n, 0.90), percentile(hist, lat_n, 0.99),
           percentile(hist, lat_n, 0.999), (unsigned long long)lat_max_us,
           lat_n ? (double)lat_sum_us / (double)lat_n : 0.0, (unsigned long long)lat_n,
           (double)cpu_us / 1e6);
    fflush(stdout);
    for (long i = 0; i < cfg.clients; i++) close(conns[i].fd);
    return (lost || dup || reordered || corrupt) ? 1 : 0;
}

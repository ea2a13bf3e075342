/*
 * cecho: a minimal single-threaded epoll echo server for the linechat echo
 * protocol, used as the reference point ("the limit of this machine").
 *
 * For every line L ended by CRLF it answers "You sent: " L "\r\n"; a line
 * holding only "." closes the connection once every earlier answer is sent.
 * Replies to all the lines of one read are gathered and written at once.
 * A line longer than 1 MiB closes the connection; a peer that does not read
 * its replies stops being read once 4 MiB of replies are pending.
 *
 * usage: cecho --port PORT [--host 127.0.0.1]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define PREFIX "You sent: "
#define PREFIX_LEN 10
#define RBUF_SIZE (64 * 1024)
#define MAX_LINE (1024 * 1024)
#define MAX_PENDING_OUT (4 * 1024 * 1024)
#define MAX_EVENTS 512

struct conn {
    int fd;
    int closing;  /* a "." line arrived: close once out is drained */
    int reading;  /* EPOLLIN registered */
    int writing;  /* EPOLLOUT registered */
    char *in;     /* unfinished line carried between reads */
    size_t in_len, in_cap, in_scanned;
    char *out;
    size_t out_off, out_len, out_cap;
};

static struct conn **table; /* indexed by fd */
static size_t table_size;
static int ep;
static char rbuf[RBUF_SIZE];

static int reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    char *p = realloc(*buf, n);
    if (!p) return -1;
    *buf = p;
    *cap = n;
    return 0;
}

static void drop(struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    table[c->fd] = NULL;
    free(c->in);
    free(c->out);
    free(c);
}

static void set_events(struct conn *c, int reading, int writing) {
    if (c->reading == reading && c->writing == writing) return;
    struct epoll_event ev = {0};
    ev.events = (reading ? EPOLLIN : 0) | (writing ? EPOLLOUT : 0);
    ev.data.fd = c->fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->reading = reading;
    c->writing = writing;
}

/* Answers every complete line in buf[0..len); returns bytes consumed, or -1
 * to drop the connection. Stops after a "." line. */
static long answer(struct conn *c, const char *buf, size_t len, size_t scan_from) {
    size_t start = 0, pos = scan_from;
    while (pos < len) {
        const char *cr = memchr(buf + pos, '\r', len - pos);
        if (!cr) break;
        size_t i = (size_t)(cr - buf);
        if (i + 1 >= len) break;
        if (buf[i + 1] != '\n') {
            pos = i + 1;
            continue;
        }
        size_t l = i - start;
        if (l == 1 && buf[start] == '.') {
            c->closing = 1;
            return (long)len;
        }
        if (reserve(&c->out, &c->out_cap, c->out_len + PREFIX_LEN + l + 2) < 0) return -1;
        char *o = c->out + c->out_len;
        memcpy(o, PREFIX, PREFIX_LEN);
        memcpy(o + PREFIX_LEN, buf + start, l);
        o[PREFIX_LEN + l] = '\r';
        o[PREFIX_LEN + l + 1] = '\n';
        c->out_len += PREFIX_LEN + l + 2;
        start = pos = i + 2;
    }
    return (long)start;
}

/* Returns -1 if the connection was dropped. */
static int flush_out(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            drop(c);
            return -1;
        }
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->out_cap > RBUF_SIZE) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
        if (c->closing) {
            drop(c);
            return -1;
        }
        set_events(c, 1, 0);
    } else {
        size_t pending = c->out_len - c->out_off;
        set_events(c, !c->closing && pending < MAX_PENDING_OUT, 1);
    }
    return 0;
}

static void on_readable(struct conn *c) {
    ssize_t n;
    do {
        n = recv(c->fd, rbuf, RBUF_SIZE, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        drop(c);
        return;
    }
    long used;
    if (c->in_len == 0) {
        used = answer(c, rbuf, (size_t)n, 0);
        if (used < 0) {
            drop(c);
            return;
        }
        size_t rest = (size_t)n - (size_t)used;
        if (rest && !c->closing) {
            if (reserve(&c->in, &c->in_cap, rest) < 0) {
                drop(c);
                return;
            }
            memcpy(c->in, rbuf + used, rest);
            c->in_len = rest;
            c->in_scanned = rest - 1; /* a CR may end the tail */
        }
    } else {
        if (reserve(&c->in, &c->in_cap, c->in_len + (size_t)n) < 0) {
            drop(c);
            return;
        }
        memcpy(c->in + c->in_len, rbuf, (size_t)n);
        c->in_len += (size_t)n;
        used = answer(c, c->in, c->in_len, c->in_scanned);
        if (used < 0) {
            drop(c);
            return;
        }
        size_t rest = c->in_len - (size_t)used;
        memmove(c->in, c->in + used, rest);
        c->in_len = c->closing ? 0 : rest;
        c->in_scanned = c->in_len ? c->in_len - 1 : 0;
        if (c->in_len == 0 && c->in_cap > RBUF_SIZE) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
    if (c->in_len > MAX_LINE) {
        drop(c);
        return;
    }
    flush_out(c);
}

static void on_accept(int lfd) {
    for (int k = 0; k < 256; k++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if ((size_t)fd >= table_size) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->reading = 1;
        struct epoll_event ev = {0};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        table[fd] = c;
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
        else {
            fprintf(stderr, "usage: cecho --port PORT [--host 127.0.0.1]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: cecho --port PORT [--host 127.0.0.1]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    table_size = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (size_t)rl.rlim_cur;
    table = calloc(table_size, sizeof *table);
    if (!table) {
        perror("cecho: calloc");
        return 1;
    }

    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "cecho: bad IPv4 address '%s'\n", host);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
        perror("cecho: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {0};
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "cecho: listening on %s:%d\n", host, port);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int k = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            perror("cecho: epoll_wait");
            return 1;
        }
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                on_accept(lfd);
                continue;
            }
            struct conn *c = table[fd];
            if (!c) continue;
            if (evs[i].events & EPOLLOUT) {
                if (flush_out(c) < 0) continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (c->reading || !(evs[i].events & EPOLLIN)) on_readable(c);
            }
        }
    }
}

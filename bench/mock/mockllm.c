/*
 * mockllm: a tiny OpenAI Chat Completions upstream for the relaygate benchmark.
 *
 *   mockllm --port P [--ttfb-ms N] [--gap-ms N] [--chunks N] [--fail-every N] [--host 127.0.0.1]
 *
 * One thread, epoll, HTTP/1.1 keep-alive (no pipelining of responses: one request at a time
 * per connection, further bytes wait in the buffer). Any POST answers either a fixed
 * `chat.completion` JSON (Content-Length) or, when the body says "stream": true, a fixed SSE
 * stream (chunked): a role chunk, N content chunks, a finish chunk, a usage chunk when the
 * body asks for stream_options.include_usage, then `data: [DONE]`. Any GET answers a small
 * model list (used as a liveness probe).
 *
 * --ttfb-ms: the whole response (or the first SSE event) is held back this long after the
 * request has been read; --gap-ms: the wait between SSE events. Both 0: everything is written
 * at once. Timers live in a binary min-heap, so thousands of delayed streams cost nothing.
 *
 * --fail-every N (soak runs): every Nth POST fails on purpose. A non-streaming request gets
 * `500` with an OpenAI-shaped error body; a streaming one alternately gets that `500` or a
 * stream cut after its first two events (the connection closes without the terminating
 * chunk). `GET /stats` answers the counts as JSON: posts, failed_500, cut_streams.
 *
 * Written for loopback benchmarks only: no TLS, no chunked request bodies, 1 MiB body cap.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_REQ (1 << 20)

typedef struct {
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    int active;      /* a response is being produced (delayed or streaming) */
    int stage;       /* next SSE event index; -1 for a delayed plain JSON response */
    int usage;       /* include the usage chunk */
    int close_after; /* client said Connection: close */
    int fail;        /* 1: answer 500; 2: cut the stream after two events */
    uint32_t gen;    /* bumps on close: stale timers are ignored */
    int open;
    int parsing; /* inside try_parse: finish_response must not re-enter it */
} conn_t;

typedef struct {
    uint64_t at;
    int fd;
    uint32_t gen;
} timer_t_;

static conn_t *conns;
static timer_t_ *heap;
static size_t heap_len, heap_cap;
static int epfd;
static uint64_t ttfb_ns, gap_ns;
static int n_chunks = 8;
static long fail_every = 0; /* 0: never fail */
static long n_posts, n_failed_500, n_cut_streams, n_stream_fails;
static char err_resp[512];

static const char *WORDS[] = {"Hello", " from", " the", " mock", " upstream", ",", " a", " fixed",
                              " answer", " for", " benchmarks", "."};
#define N_WORDS (sizeof(WORDS) / sizeof(WORDS[0]))

static char *json_resp;
static size_t json_resp_len;
static const char *sse_head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
static char **events; /* each already framed as one HTTP chunk */
static size_t *event_lens;
static int n_events; /* role + content + finish + usage + done; usage index = n_events - 2 */
static const char *models_resp;
static char *stream_all[2]; /* the whole stream in one buffer, without and with usage (no gap) */
static size_t stream_all_len[2];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static char *frame_chunk(const char *data, size_t *len) {
    size_t dl = strlen(data);
    char *buf = malloc(dl + 32);
    int n = sprintf(buf, "%zx\r\n%s\r\n", dl, data);
    *len = (size_t)n;
    return buf;
}

static void build_responses(void) {
    char content[1024] = "";
    for (int i = 0; i < n_chunks; i++) strcat(content, WORDS[i % N_WORDS]);
    char body[4096];
    int bl = snprintf(body, sizeof body,
                      "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":1700000000,"
                      "\"model\":\"mock-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                      "\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                      "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d,\"total_tokens\":%d}}",
                      content, n_chunks, 12 + n_chunks);
    json_resp = malloc(bl + 256);
    json_resp_len = (size_t)sprintf(json_resp,
                                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                    "Content-Length: %d\r\n\r\n%s",
                                    bl, body);
    n_events = n_chunks + 4;
    events = calloc((size_t)n_events, sizeof(char *));
    event_lens = calloc((size_t)n_events, sizeof(size_t));
    const char *pre = "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
                      "\"created\":1700000000,\"model\":\"mock-model\",";
    char ev[2048];
    snprintf(ev, sizeof ev,
             "%s\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
             "\"logprobs\":null,\"finish_reason\":null}]}\n\n",
             pre);
    events[0] = frame_chunk(ev, &event_lens[0]);
    for (int i = 0; i < n_chunks; i++) {
        snprintf(ev, sizeof ev,
                 "%s\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},\"logprobs\":null,"
                 "\"finish_reason\":null}]}\n\n",
                 pre, WORDS[i % N_WORDS]);
        events[1 + i] = frame_chunk(ev, &event_lens[1 + i]);
    }
    snprintf(ev, sizeof ev,
             "%s\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
             pre);
    events[n_chunks + 1] = frame_chunk(ev, &event_lens[n_chunks + 1]);
    snprintf(ev, sizeof ev,
             "%s\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d,"
             "\"total_tokens\":%d}}\n\n",
             pre, n_chunks, 12 + n_chunks);
    events[n_chunks + 2] = frame_chunk(ev, &event_lens[n_chunks + 2]);
    char *done = frame_chunk("data: [DONE]\n\n", &event_lens[n_chunks + 3]);
    /* the terminating zero-length chunk travels with [DONE] */
    events[n_chunks + 3] = malloc(event_lens[n_chunks + 3] + 8);
    memcpy(events[n_chunks + 3], done, event_lens[n_chunks + 3]);
    memcpy(events[n_chunks + 3] + event_lens[n_chunks + 3], "0\r\n\r\n", 5);
    event_lens[n_chunks + 3] += 5;
    free(done);
    for (int u = 0; u < 2; u++) {
        size_t total = strlen(sse_head);
        for (int i = 0; i < n_events; i++) total += event_lens[i];
        stream_all[u] = malloc(total);
        size_t off = strlen(sse_head);
        memcpy(stream_all[u], sse_head, off);
        for (int i = 0; i < n_events; i++) {
            if (i == n_events - 2 && !u) continue;
            memcpy(stream_all[u] + off, events[i], event_lens[i]);
            off += event_lens[i];
        }
        stream_all_len[u] = off;
    }
    const char *err_body = "{\"error\":{\"message\":\"injected failure\",\"type\":\"server_error\","
                           "\"code\":\"injected\"}}";
    snprintf(err_resp, sizeof err_resp,
             "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(err_body), err_body);
    const char *models = "{\"object\":\"list\",\"data\":[{\"id\":\"mock-model\",\"object\":\"model\","
                         "\"owned_by\":\"mock\"}]}";
    char *mr = malloc(strlen(models) + 128);
    sprintf(mr, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
            strlen(models), models);
    models_resp = mr;
}

/* ---- timers ---- */
static void heap_push(uint64_t at, int fd, uint32_t gen) {
    if (heap_len == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 1024;
        heap = realloc(heap, heap_cap * sizeof *heap);
    }
    size_t i = heap_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (heap[p].at <= at) break;
        heap[i] = heap[p];
        i = p;
    }
    heap[i].at = at;
    heap[i].fd = fd;
    heap[i].gen = gen;
}

static timer_t_ heap_pop(void) {
    timer_t_ top = heap[0], last = heap[--heap_len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t mv = last.at;
        if (l < heap_len && heap[l].at < mv) m = l, mv = heap[l].at;
        if (r < heap_len && heap[r].at < mv) m = r;
        if (m == i) break;
        heap[i] = heap[m];
        i = m;
    }
    if (heap_len) heap[i] = last;
    return top;
}

/* ---- connections ---- */
static void conn_close(int fd) {
    conn_t *c = &conns[fd];
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    c->open = 0;
    c->active = 0;
    c->in_len = c->out_len = c->out_off = 0;
    c->gen++;
}

static void want_write(int fd, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

/* returns 0 if the connection was closed */
static int flush_out(int fd) {
    conn_t *c = &conns[fd];
    while (c->out_off < c->out_len) {
        ssize_t n = write(fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            want_write(fd, 1);
            return 1;
        } else {
            conn_close(fd);
            return 0;
        }
    }
    c->out_len = c->out_off = 0;
    return 1;
}

static int send_bytes(int fd, const char *p, size_t n) {
    conn_t *c = &conns[fd];
    if (c->out_len == 0) { /* fast path: write straight from the static buffer */
        ssize_t w = write(fd, p, n);
        if (w == (ssize_t)n) return 1;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(fd);
            return 0;
        }
        if (w > 0) p += w, n -= (size_t)w;
    }
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    want_write(fd, 1);
    return 1;
}

static void try_parse(int fd);

static void finish_response(int fd) {
    conn_t *c = &conns[fd];
    c->active = 0;
    if (c->close_after) {
        if (c->out_len) flush_out(fd);
        conn_close(fd);
        return;
    }
    if (!c->parsing) try_parse(fd); /* a request may already be buffered */
}

/* emit SSE events from c->stage on: the role chunk and the first token together, then one
 * event per --gap-ms tick (all at once without a gap); the finish chunk carries usage and [DONE] */
static void stream_step(int fd) {
    conn_t *c = &conns[fd];
    const int finish = n_events - 3, usage = n_events - 2, done = n_events - 1;
    if (c->fail == 2) { /* a cut stream: head, two events, then the connection goes away */
        if (c->stage == 0 && !send_bytes(fd, sse_head, strlen(sse_head))) return;
        if (!send_bytes(fd, events[c->stage], event_lens[c->stage])) return;
        if (++c->stage < 2) {
            if (gap_ns) {
                heap_push(now_ns() + gap_ns, fd, c->gen);
                return;
            }
            if (!send_bytes(fd, events[c->stage], event_lens[c->stage])) return;
        }
        if (c->out_len) flush_out(fd);
        conn_close(fd);
        return;
    }
    if (c->stage == 0 && gap_ns == 0) {
        if (send_bytes(fd, stream_all[c->usage], stream_all_len[c->usage])) finish_response(fd);
        return;
    }
    if (c->stage == 0) {
        if (!send_bytes(fd, sse_head, strlen(sse_head))) return;
        if (!send_bytes(fd, events[0], event_lens[0])) return;
        c->stage = 1;
    }
    for (;;) {
        if (!send_bytes(fd, events[c->stage], event_lens[c->stage])) return;
        if (c->stage == finish) {
            if (c->usage && !send_bytes(fd, events[usage], event_lens[usage])) return;
            if (!send_bytes(fd, events[done], event_lens[done])) return;
            finish_response(fd);
            return;
        }
        c->stage++;
        if (gap_ns) {
            heap_push(now_ns() + gap_ns, fd, c->gen);
            return;
        }
    }
}

static int body_says_true(const char *body, size_t len, const char *key) {
    const char *p = memmem(body, len, key, strlen(key));
    if (!p) return 0;
    p += strlen(key);
    const char *end = body + len;
    while (p < end && (*p == ' ' || *p == '"' || *p == ':' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return end - p >= 4 && memcmp(p, "true", 4) == 0;
}

static void send_stats(int fd) {
    char body[256], resp[512];
    int bl = snprintf(body, sizeof body, "{\"posts\":%ld,\"failed_500\":%ld,\"cut_streams\":%ld}", n_posts,
                      n_failed_500, n_cut_streams);
    int rl = snprintf(resp, sizeof resp,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", bl, body);
    if (send_bytes(fd, resp, (size_t)rl)) finish_response(fd);
}

static void respond(int fd, int is_post, int stream, int usage, int stats) {
    conn_t *c = &conns[fd];
    if (!is_post) {
        if (stats) {
            send_stats(fd);
            return;
        }
        if (send_bytes(fd, models_resp, strlen(models_resp))) finish_response(fd);
        return;
    }
    c->fail = 0;
    if (fail_every > 0 && ++n_posts % fail_every == 0) {
        c->fail = (stream && (n_stream_fails++ % 2)) ? 2 : 1;
        if (c->fail == 1) n_failed_500++;
        else n_cut_streams++;
    } else if (fail_every <= 0) {
        n_posts++;
    }
    c->usage = usage;
    c->active = 1;
    c->stage = stream ? 0 : -1;
    if (ttfb_ns) {
        heap_push(now_ns() + ttfb_ns, fd, c->gen);
        return;
    }
    if (c->fail == 1) {
        if (send_bytes(fd, err_resp, strlen(err_resp))) finish_response(fd);
    } else if (stream) {
        stream_step(fd);
    } else {
        if (send_bytes(fd, json_resp, json_resp_len)) finish_response(fd);
    }
}

static void try_parse(int fd) {
    conn_t *c = &conns[fd];
    c->parsing = 1;
    while (c->open && !c->active && c->in_len > 0) {
        char *hend = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!hend) {
            if (c->in_len > MAX_REQ) conn_close(fd);
            break;
        }
        size_t hlen = (size_t)(hend - c->in) + 4;
        size_t clen = 0;
        c->close_after = 0;
        for (char *line = memchr(c->in, '\n', hlen); line && line < hend;
             line = memchr(line + 1, '\n', (size_t)(hend - line))) {
            char *l = line + 1;
            if (strncasecmp(l, "content-length:", 15) == 0) {
                clen = strtoul(l + 15, NULL, 10);
            } else if (strncasecmp(l, "connection:", 11) == 0) {
                char *v = l + 11;
                while (*v == ' ') v++;
                if (strncasecmp(v, "close", 5) == 0) c->close_after = 1;
            }
        }
        if (clen > MAX_REQ) {
            conn_close(fd);
            break;
        }
        if (c->in_len < hlen + clen) break; /* wait for the body */
        int is_post = strncmp(c->in, "POST", 4) == 0;
        int stream = is_post && body_says_true(c->in + hlen, clen, "\"stream\"");
        int usage = stream && body_says_true(c->in + hlen, clen, "\"include_usage\"");
        int stats = !is_post && strncmp(c->in, "GET /stats ", 11) == 0;
        size_t used = hlen + clen; /* consume the request before answering it */
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        respond(fd, is_post, stream, usage, stats);
    }
    c->parsing = 0;
}

static void on_readable(int fd) {
    conn_t *c = &conns[fd];
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 16384;
            c->in = realloc(c->in, c->in_cap);
        }
        ssize_t n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            if ((size_t)n < c->in_cap - c->in_len + (size_t)n) break; /* short read: drained */
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_close(fd); /* EOF or error */
        return;
    }
    try_parse(fd);
}

static void on_timer(timer_t_ t) {
    conn_t *c = &conns[t.fd];
    if (!c->open || c->gen != t.gen || !c->active) return;
    if (c->fail == 1) {
        if (send_bytes(t.fd, err_resp, strlen(err_resp))) finish_response(t.fd);
    } else if (c->stage < 0) {
        if (send_bytes(t.fd, json_resp, json_resp_len)) finish_response(t.fd);
    } else {
        stream_step(t.fd);
    }
}

int main(int argc, char **argv) {
    int port = 0;
    const char *host = "127.0.0.1";
    long ttfb_ms = 0, gap_ms = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
        else if (!strcmp(argv[i], "--ttfb-ms") && i + 1 < argc) ttfb_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--gap-ms") && i + 1 < argc) gap_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--chunks") && i + 1 < argc) n_chunks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fail-every") && i + 1 < argc) fail_every = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: %s --port P [--ttfb-ms N] [--gap-ms N] [--chunks N] [--fail-every N] [--host H]\n", argv[0]);
            return 2;
        }
    }
    if (port <= 0 || n_chunks < 1 || n_chunks > 64) {
        fprintf(stderr, "mockllm: need --port and 1..64 --chunks\n");
        return 2;
    }
    ttfb_ns = (uint64_t)ttfb_ms * 1000000ull;
    gap_ns = (uint64_t)gap_ms * 1000000ull;
    signal(SIGPIPE, SIG_IGN);
    build_responses();
    conns = calloc(MAX_FDS, sizeof(conn_t));

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("inet_pton");
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    epfd = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    fprintf(stderr, "mockllm listening on %s:%d ttfb=%ldms gap=%ldms chunks=%d\n", host, port, ttfb_ms, gap_ms,
            n_chunks);

    struct epoll_event evs[512];
    for (;;) {
        struct timespec ts, *tsp = NULL; /* epoll_pwait2: nanosecond timers, not whole ms */
        if (heap_len) {
            uint64_t now = now_ns(), wait = heap[0].at <= now ? 0 : heap[0].at - now;
            ts.tv_sec = (time_t)(wait / 1000000000ull);
            ts.tv_nsec = (long)(wait % 1000000000ull);
            tsp = &ts;
        }
        int n = epoll_pwait2(epfd, evs, 512, tsp, NULL);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (cfd < 0) break;
                    if (cfd >= MAX_FDS) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[cfd].open = 1;
                    conns[cfd].active = 0;
                    conns[cfd].in_len = conns[cfd].out_len = conns[cfd].out_off = 0;
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ev);
                }
                continue;
            }
            if (!conns[fd].open) continue;
            if (evs[i].events & EPOLLOUT) {
                if (!flush_out(fd)) continue;
                if (conns[fd].out_len == 0) want_write(fd, 0);
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(fd);
        }
        uint64_t now = now_ns();
        while (heap_len && heap[0].at <= now) on_timer(heap_pop());
    }
}

/*
 * oneload: the traffic shape most applications have. N connections, each with exactly one request
 * in flight (no pipelining), a get/set mix over uniformly random keys, fixed-size values, one epoll
 * thread. Prints one JSON line: ops, seconds, ops/s, latency percentiles (µs), errors.
 *
 *   oneload -p PORT [-c CONNS] [-d SECONDS] [-k KEYS] [-s VALUE_BYTES] [-g GET_RATIO] [-w WARMUP_S]
 *
 * Keys are preloaded with one set each before the clock starts. Built by bench/one-in-flight.ts
 * (gcc -O2); a C client, so the generator is not what limits a Node server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_US 100000 /* histogram: 1 µs buckets up to 100 ms, then one overflow bucket */

typedef struct {
  int fd;
  int is_get;
  uint64_t sent_at;
  char in[16384];
  int in_len;
} conn_t;

static int port = 11211, conns = 50, duration = 5, keys = 10000, vsize = 20, warmup = 1;
static double get_ratio = 0.9;
static char value[4096];
static uint64_t hist[MAX_US + 1];
static uint64_t ops, errors;
static uint64_t rng = 88172645463325252ULL;

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int dial(void) {
  for (int attempt = 0; attempt < 200; attempt++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    close(fd);
    usleep(10000);
  }
  fprintf(stderr, "oneload: cannot connect to port %d\n", port);
  exit(1);
}

static int request(char *buf, int key, int is_get) {
  if (is_get) return sprintf(buf, "get key:%d\r\n", key);
  int n = sprintf(buf, "set key:%d 0 0 %d\r\n", key, vsize);
  memcpy(buf + n, value, vsize);
  memcpy(buf + n + vsize, "\r\n", 2);
  return n + vsize + 2;
}

static void send_next(conn_t *c) {
  char buf[4200];
  c->is_get = (double)(next_rand() % 1000000) / 1000000.0 < get_ratio;
  int n = request(buf, (int)(next_rand() % (uint64_t)keys), c->is_get);
  c->in_len = 0;
  c->sent_at = now_us();
  if (write(c->fd, buf, n) != n) {
    fprintf(stderr, "oneload: short write\n");
    exit(1);
  }
}

/* Whether the bytes read so far hold the whole reply: END for a get, one line for a set. */
static int complete(conn_t *c) {
  if (c->in_len < 2 || memcmp(c->in + c->in_len - 2, "\r\n", 2) != 0) return 0;
  if (!c->is_get) return 1;
  if (c->in_len >= 5 && memcmp(c->in + c->in_len - 5, "END\r\n", 5) == 0) return 1;
  /* An error line instead of END. */
  return memcmp(c->in, "VALUE", 5) != 0;
}

static void preload(void) {
  int fd = dial();
  char buf[4200], line[256];
  for (int k = 0; k < keys; k++) {
    int n = request(buf, k, 0);
    if (write(fd, buf, n) != n) exit(1);
    int got = 0;
    while (got < 2 || memcmp(line + got - 2, "\r\n", 2) != 0) {
      int r = read(fd, line + got, sizeof line - got);
      if (r <= 0) exit(1);
      got += r;
    }
  }
  close(fd);
}

static uint64_t percentile(double p) {
  uint64_t want = (uint64_t)(p * ops), seen = 0;
  for (int i = 0; i <= MAX_US; i++) {
    seen += hist[i];
    if (seen > want) return i;
  }
  return MAX_US;
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "p:c:d:k:s:g:w:")) != -1) {
    switch (opt) {
      case 'p': port = atoi(optarg); break;
      case 'c': conns = atoi(optarg); break;
      case 'd': duration = atoi(optarg); break;
      case 'k': keys = atoi(optarg); break;
      case 's': vsize = atoi(optarg); break;
      case 'g': get_ratio = atof(optarg); break;
      case 'w': warmup = atoi(optarg); break;
      default: fprintf(stderr, "usage: oneload -p PORT [-c N] [-d S] [-k N] [-s BYTES] [-g RATIO] [-w S]\n"); return 2;
    }
  }
  if (vsize < 1 || vsize > (int)sizeof value) vsize = 20;
  memset(value, 'x', sizeof value);
  preload();
  int ep = epoll_create1(0);
  conn_t *cs = calloc(conns, sizeof(conn_t));
  for (int i = 0; i < conns; i++) {
    cs[i].fd = dial();
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  for (int i = 0; i < conns; i++) send_next(&cs[i]);
  uint64_t start = now_us(), measure_from = start + (uint64_t)warmup * 1000000,
           end = measure_from + (uint64_t)duration * 1000000;
  struct epoll_event evs[256];
  int measuring = 0;
  for (;;) {
    uint64_t t = now_us();
    if (t >= end) break;
    if (!measuring && t >= measure_from) {
      /* The caller reads the server's CPU time at these two marks. */
      fprintf(stderr, "start\n");
      measuring = 1;
    }
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      int r = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
      if (r <= 0) {
        fprintf(stderr, "oneload: connection closed by the server\n");
        return 1;
      }
      c->in_len += r;
      if (!complete(c)) {
        if (c->in_len == (int)sizeof c->in) c->in_len = 0;
        continue;
      }
      uint64_t done = now_us();
      if (done >= measure_from && done < end) {
        uint64_t us = done - c->sent_at;
        hist[us > MAX_US ? MAX_US : us]++;
        ops++;
        int ok = c->is_get ? (memcmp(c->in, "VALUE", 5) == 0 || memcmp(c->in, "END", 3) == 0)
                           : memcmp(c->in, "STORED", 6) == 0;
        if (!ok) errors++;
      }
      send_next(c);
    }
  }
  fprintf(stderr, "stop\n");
  printf("{\"ops\":%lu,\"seconds\":%d,\"opsPerSecond\":%.0f,\"p50us\":%lu,\"p99us\":%lu,\"p999us\":%lu,\"errors\":%lu}\n",
         (unsigned long)ops, duration, (double)ops / duration, (unsigned long)percentile(0.5),
         (unsigned long)percentile(0.99), (unsigned long)percentile(0.999), (unsigned long)errors);
  return 0;
}

/* limiterd - the host's single rate limiter, usage ledger writer and metrics
 * aggregator (DESIGN.md §6).  One thread: zmq_poll on a REP socket bound on
 * ipc://, answering one message at a time, with a timer that flushes usage
 * rows and sweeps expired reservations and idle buckets.
 *
 *   limiterd --socket ipc://PATH [--db PATH] [--flush-ms N] [--reservation-ttl-ms N]
 *
 * The socket also comes from $LLMPROXY_LIMITER, the database from
 * $LLMPROXY_DB; without a database only counters are kept.  A missing
 * socket directory is created 0700; the socket file's mode follows the
 * umask (systemd: UMask=, Group=), so whoever may connect is the deployer's
 * choice, not ours. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "bucket.h"
#include "ledger.h"
#include "limitproto.h"
#include "metrics.h"
#include "util.h"

#define DEFAULT_FLUSH_MS 1000
#define MIN_FLUSH_MS 10
#define MAX_FLUSH_MS 60000
#define HOUSEKEEP_MS 1000    /* expiry and gc sweep period */
#define PROBE_TIMEOUT_MS 200 /* "is another limiterd serving?" */
#define MAX_BATCH_MSGS 256   /* messages handled between timer checks */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

struct limiterd {
	void *ctx, *rep;
	struct bucket_set *bs;
	struct metrics *met;
	struct ledger *led;
	int64_t flush_ms;
	int64_t last_flush, last_housekeep;
	uint64_t bad_messages;
	struct buf out;
	struct buf text;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: limiterd --socket ipc://PATH [--db PATH] [--flush-ms N]"
		   " [--reservation-ttl-ms N]\n"
		   "  --socket ipc://PATH    where to listen (default: $LLMPROXY_LIMITER)\n"
		   "  --db PATH              write usage rows to this store (default: $LLMPROXY_DB;\n"
		   "                         without one, only counters are kept)\n"
		   "  --flush-ms N           usage batch period, %d..%d (default %d)\n"
		   "  --reservation-ttl-ms N unsettled token reservations expire after N ms\n"
		   "                         (default %d)\n",
		MIN_FLUSH_MS, MAX_FLUSH_MS, DEFAULT_FLUSH_MS, BUCKET_DEFAULT_TTL_MS);
}

/* mkdir -p for the directory part of path; created directories get 0700. */
static void make_parent_dirs(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			fatal("cannot create %s: %s", dir, strerror(errno));
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		fatal("cannot create %s: %s", dir, strerror(errno));
	/* whoever can write the directory can put a fake limiterd (one that
	 * allows everything) in front of the proxyds: only us, or root */
	struct stat sb;
	if (lstat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
		fatal("%s is not a directory", dir);
	if ((sb.st_uid != geteuid() && sb.st_uid != 0) || (sb.st_mode & 022))
		fatal("the socket directory %s must be writable by limiterd's user only "
		      "(owner uid %ld, mode %03o)", dir, (long)sb.st_uid, (unsigned)(sb.st_mode & 0777));
}

/* 1 when something answers a PING on endpoint within PROBE_TIMEOUT_MS. */
static int another_is_serving(void *ctx, const char *endpoint)
{
	int linger = 0, answered = 0;
	void *s = zmq_socket(ctx, ZMQ_REQ);
	if (!s)
		return 0;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
	if (zmq_connect(s, endpoint) == 0) {
		unsigned char ping[2] = {LP_VERSION, LP_PING};
		int64_t deadline = mono_ms() + PROBE_TIMEOUT_MS;
		zmq_pollitem_t it = {s, 0, ZMQ_POLLOUT, 0};
		if (zmq_poll(&it, 1, PROBE_TIMEOUT_MS) == 1 &&
		    zmq_send(s, ping, sizeof ping, ZMQ_DONTWAIT) == 2) {
			int64_t left = deadline - mono_ms();
			it.events = ZMQ_POLLIN;
			if (zmq_poll(&it, 1, left > 0 ? (long)left : 0) == 1)
				answered = 1;
		}
	}
	zmq_close(s);
	return answered;
}

/* Takes PATH.lock (held until exit), so two limiterds never share a socket. */
static void take_lock(const char *path, const char *endpoint)
{
	char *lock = xasprintf("%s.lock", path);
	int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		fatal("cannot open %s: %s", lock, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			fatal("another limiterd is serving %s (it holds %s)", endpoint, lock);
		fatal("cannot lock %s: %s", lock, strerror(errno));
	}
	free(lock); /* fd stays open: the lock lives as long as we do */
}

static void send_msg(struct limiterd *d, const struct lp_msg *m)
{
	buf_reset(&d->out);
	if (lp_encode(m, &d->out) < 0) {
		/* our own answer failed validation: a bug, answer an error instead */
		struct lp_msg e;
		memset(&e, 0, sizeof e);
		e.type = LP_ERROR;
		e.u.error.code = LP_E_VALUE;
		snprintf(e.u.error.message, sizeof e.u.error.message, "internal encoding error");
		buf_reset(&d->out);
		lp_encode(&e, &d->out);
		log_msg("internal: could not encode answer type %d", m->type);
	}
	if (zmq_send(d->rep, d->out.data, d->out.len, 0) < 0)
		log_msg("send: %s", zmq_strerror(zmq_errno()));
}

static void send_error(struct limiterd *d, int code)
{
	struct lp_msg e;
	memset(&e, 0, sizeof e);
	e.type = LP_ERROR;
	e.u.error.code = code;
	snprintf(e.u.error.message, sizeof e.u.error.message, "%s", lp_strerror(code));
	d->bad_messages++;
	if (d->bad_messages <= 10 || d->bad_messages % 1000 == 0)
		log_msg("rejected a message (%s), %llu so far", lp_strerror(code),
			(unsigned long long)d->bad_messages);
	send_msg(d, &e);
}

/* Cuts the metrics text to the protocol bound at a line end. */
static size_t metrics_fit(const struct buf *t)
{
	if (t->len <= LP_MAX_METRICS)
		return t->len;
	size_t n = LP_MAX_METRICS;
	while (n > 0 && t->data[n - 1] != '\n')
		n--;
	return n;
}

static void handle(struct limiterd *d, const void *data, size_t len)
{
	struct lp_msg in, ans;
	int rc = lp_decode(data, len, &in);
	if (rc < 0) {
		send_error(d, rc);
		return;
	}
	memset(&ans, 0, sizeof ans);
	int64_t now = mono_ms();
	switch (in.type) {
	case LP_PING:
		ans.type = LP_PONG;
		break;
	case LP_RESERVE:
		ans.type = LP_RESERVE_ANS;
		if (bucket_reserve(d->bs, &in.u.reserve, now, &ans.u.reserve_ans) < 0) {
			send_error(d, LP_E_VALUE);
			return;
		}
		break;
	case LP_SETTLE: {
		const struct lp_settle *s = &in.u.settle;
		if (s->reservation)
			bucket_settle(d->bs, s->reservation, s->prompt_tokens + s->completion_tokens, now);
		metrics_settle(d->met, s);
		if (d->led)
			ledger_add(d->led, s, wall_ms());
		ans.type = LP_SETTLE_ANS;
		break;
	}
	case LP_CONN_EVENT:
		metrics_conn(d->met, in.u.conn_delta);
		ans.type = LP_CONN_ANS;
		break;
	case LP_METRICS:
		buf_reset(&d->text);
		metrics_render(d->met, bucket_open_reservations(d->bs), &d->text);
		ans.type = LP_METRICS_ANS;
		ans.u.metrics.text = d->text.data;
		ans.u.metrics.len = metrics_fit(&d->text);
		break;
	default: /* an answer type sent to us */
		send_error(d, LP_E_TYPE);
		return;
	}
	send_msg(d, &ans);
}

/* Receives and answers one request; 0 handled, 1 nothing waiting. */
static int serve_one(struct limiterd *d)
{
	zmq_msg_t msg;
	zmq_msg_init(&msg);
	if (zmq_msg_recv(&msg, d->rep, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&msg);
		if (zmq_errno() == EAGAIN || zmq_errno() == EINTR)
			return 1;
		fatal("recv: %s", zmq_strerror(zmq_errno()));
	}
	int multipart = zmq_msg_more(&msg);
	if (multipart) {
		/* one frame per message: drain the rest, then refuse */
		zmq_msg_t part;
		zmq_msg_init(&part);
		while (zmq_msg_more(&msg) && zmq_msg_recv(&part, d->rep, 0) >= 0) {
			zmq_msg_close(&msg);
			msg = part;
			zmq_msg_init(&part);
		}
		zmq_msg_close(&part);
		send_error(d, LP_E_SIZE);
	} else {
		handle(d, zmq_msg_data(&msg), zmq_msg_size(&msg));
	}
	zmq_msg_close(&msg);
	return 0;
}

static void flush_ledger(struct limiterd *d, int64_t now)
{
	d->last_flush = now;
	if (d->led)
		ledger_flush(d->led);
}

static void housekeep(struct limiterd *d, int64_t now)
{
	if (d->led && ledger_pending(d->led) &&
	    (ledger_pending(d->led) >= LEDGER_BATCH || now - d->last_flush >= d->flush_ms))
		flush_ledger(d, now);
	if (now - d->last_housekeep >= HOUSEKEEP_MS) {
		d->last_housekeep = now;
		bucket_expire(d->bs, now);
		bucket_gc(d->bs, now);
	}
}

static long poll_timeout(const struct limiterd *d, int64_t now)
{
	int64_t t = d->last_housekeep + HOUSEKEEP_MS - now;
	if (d->led && ledger_pending(d->led)) {
		int64_t f = d->last_flush + d->flush_ms - now;
		if (f < t)
			t = f;
	}
	return t < 0 ? 0 : (long)t;
}

int main(int argc, char **argv)
{
	const char *endpoint = getenv("LLMPROXY_LIMITER");
	const char *db = getenv("LLMPROXY_DB");
	int64_t flush_ms = DEFAULT_FLUSH_MS, ttl_ms = BUCKET_DEFAULT_TTL_MS;
	struct limiterd d;

	log_set_prog("limiterd");
	memset(&d, 0, sizeof d);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			usage(stderr);
			return 2;
		}
		if (strcmp(a, "--socket") == 0) {
			endpoint = argv[++i];
		} else if (strcmp(a, "--db") == 0) {
			db = argv[++i];
		} else if (strcmp(a, "--flush-ms") == 0) {
			if (parse_i64(argv[++i], &flush_ms) < 0 || flush_ms < MIN_FLUSH_MS ||
			    flush_ms > MAX_FLUSH_MS) {
				fprintf(stderr, "limiterd: --flush-ms must be %d..%d\n", MIN_FLUSH_MS,
					MAX_FLUSH_MS);
				return 2;
			}
		} else if (strcmp(a, "--reservation-ttl-ms") == 0) {
			if (parse_i64(argv[++i], &ttl_ms) < 0 || ttl_ms < 1) {
				fprintf(stderr, "limiterd: --reservation-ttl-ms must be a positive integer\n");
				return 2;
			}
		} else {
			fprintf(stderr, "limiterd: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!endpoint || !*endpoint) {
		fprintf(stderr, "limiterd: no socket: give --socket ipc://PATH or set LLMPROXY_LIMITER\n");
		return 2;
	}
	if (strncmp(endpoint, "ipc://", 6) != 0 || !endpoint[6])
		fatal("socket must be ipc://PATH, not %s", endpoint);
	const char *path = endpoint + 6;
	if (strlen(path) + 1 > sizeof(((struct sockaddr_un *)0)->sun_path))
		fatal("socket path too long (%zu bytes): %s", strlen(path), path);
	if (db && !*db)
		db = NULL;

	signal(SIGPIPE, SIG_IGN);
	make_parent_dirs(path);
	d.ctx = zmq_ctx_new();
	if (!d.ctx)
		fatal("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
	struct stat sb;
	if (stat(path, &sb) == 0 && another_is_serving(d.ctx, endpoint))
		fatal("another limiterd is serving %s", endpoint);
	take_lock(path, endpoint);

	if (db) {
		char err[256];
		d.led = ledger_open(db, err, sizeof err);
		if (!d.led)
			fatal("cannot open the store %s: %s", db, err);
	}
	uint64_t first_id;
	random_bytes(&first_id, sizeof first_id);
	d.bs = bucket_new(0, 0, ttl_ms, first_id);
	d.met = metrics_new();
	d.flush_ms = flush_ms;
	buf_init(&d.out);
	buf_init(&d.text);

	/* Nobody answered and we hold the lock: a socket file left here is stale. */
	if (unlink(path) < 0 && errno != ENOENT)
		fatal("cannot remove stale socket %s: %s", path, strerror(errno));
	d.rep = zmq_socket(d.ctx, ZMQ_REP);
	int linger = 0;
	int64_t maxmsg = LP_MAX_MSG;
	zmq_setsockopt(d.rep, ZMQ_LINGER, &linger, sizeof linger);
	zmq_setsockopt(d.rep, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
	if (zmq_bind(d.rep, endpoint) < 0)
		fatal("cannot listen on %s: %s", endpoint, zmq_strerror(zmq_errno()));

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	log_msg("serving %s (usage ledger: %s)", endpoint, d.led ? db : "off, counters only");
	d.last_flush = d.last_housekeep = mono_ms();
	while (!stop_signal) {
		zmq_pollitem_t it = {d.rep, 0, ZMQ_POLLIN, 0};
		int rc = zmq_poll(&it, 1, poll_timeout(&d, mono_ms()));
		if (rc < 0 && zmq_errno() != EINTR)
			fatal("poll: %s", zmq_strerror(zmq_errno()));
		if (rc > 0)
			for (int n = 0; n < MAX_BATCH_MSGS && !stop_signal && serve_one(&d) == 0; n++)
				housekeep(&d, mono_ms());
		housekeep(&d, mono_ms());
	}

	log_msg("signal %d: flushing and exiting", (int)stop_signal);
	flush_ledger(&d, mono_ms());
	if (d.led && ledger_dropped(d.led))
		log_msg("usage: %llu rows were dropped while the store failed",
			(unsigned long long)ledger_dropped(d.led));
	ledger_close(d.led);
	zmq_close(d.rep);
	unlink(path);
	zmq_ctx_term(d.ctx);
	bucket_free(d.bs);
	metrics_free(d.met);
	buf_free(&d.out);
	buf_free(&d.text);
	return 0;
}

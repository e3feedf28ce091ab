/* limiter_bench.c - how many reserve+settle pairs one proxyd-side client
 * gets through limiterd per second, and the mean added latency of each.
 *
 *   limiter_bench [-n PAIRS] [--limiterd PATH | --socket ipc://PATH]
 *
 * Without --socket it starts its own limiterd (PATH, else
 * $LLMPROXY_BIN/limiterd, else bin/limiterd) on a socket in a fresh
 * temporary directory, without a ledger, and stops it at the end.
 * Build: cc -O2 -D_GNU_SOURCE -Icommon -Iproxyd tests/bench/limiter_bench.c
 *        proxyd/limit_client.c common/limitproto.c common/util.c -lzmq -lm */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "limit_client.h"

#define DEFAULT_PAIRS 20000
#define START_TIMEOUT_MS 3000

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	long pairs = DEFAULT_PAIRS;
	const char *bin = NULL, *endpoint = NULL;
	char dir[] = "/tmp/limiter-bench-XXXXXX";
	char ep[300], sock[256];
	pid_t child = -1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			pairs = atol(argv[++i]);
		else if (strcmp(argv[i], "--limiterd") == 0 && i + 1 < argc)
			bin = argv[++i];
		else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
			endpoint = argv[++i];
		else {
			fprintf(stderr, "usage: limiter_bench [-n PAIRS] [--limiterd PATH | --socket ipc://PATH]\n");
			return 2;
		}
	}
	if (pairs < 1)
		pairs = DEFAULT_PAIRS;
	if (!endpoint) {
		static char binbuf[512];
		if (!bin) {
			const char *b = getenv("LLMPROXY_BIN");
			snprintf(binbuf, sizeof binbuf, "%s/limiterd", b && *b ? b : "bin");
			bin = binbuf;
		}
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			return 1;
		}
		snprintf(sock, sizeof sock, "%s/l.sock", dir);
		snprintf(ep, sizeof ep, "ipc://%s", sock);
		endpoint = ep;
		child = fork();
		if (child == 0) {
			unsetenv("LLMPROXY_DB");
			execl(bin, "limiterd", "--socket", ep, (char *)NULL);
			perror(bin);
			_exit(127);
		}
		struct stat sb;
		int64_t until = mono_us() + START_TIMEOUT_MS * 1000LL;
		while (stat(sock, &sb) < 0 && mono_us() < until)
			usleep(5000);
	}

	struct limiter *l = limiter_open(endpoint, 1000);
	struct limit_reserve_req rq;
	struct limit_settle_req st;
	struct limit_answer a;
	memset(&rq, 0, sizeof rq);
	memset(&st, 0, sizeof st);
	/* a realistic request: assignment, virtual key and connection buckets,
	 * limits high enough that nothing is denied */
	snprintf(rq.specs[0].key, sizeof rq.specs[0].key, "asg:asg-bench");
	rq.specs[0].rps = 1e8;
	rq.specs[0].tpm = (int64_t)1 << 50;
	snprintf(rq.specs[1].key, sizeof rq.specs[1].key, "vkey:vkey-bench");
	rq.specs[1].rpm = (int64_t)1 << 50;
	snprintf(rq.specs[2].key, sizeof rq.specs[2].key, "conn:conn-bench");
	rq.specs[2].tpm = (int64_t)1 << 50;
	rq.nspecs = 3;
	rq.est_tokens = 500;
	st.prompt_tokens = 120;
	st.completion_tokens = 80;
	st.status = 200;
	st.latency_ms = 12;
	snprintf(st.vkey_id, sizeof st.vkey_id, "vkey-bench");
	snprintf(st.asg_id, sizeof st.asg_id, "asg-bench");
	snprintf(st.alias, sizeof st.alias, "gpt-4");
	snprintf(st.provider, sizeof st.provider, "openai");

	int rc = 1;
	/* warm-up: connect, create the buckets */
	for (int i = 0; i < 100; i++) {
		if (limiter_reserve(l, &rq, &a) < 0) {
			fprintf(stderr, "limiter_bench: limiterd at %s does not answer\n", endpoint);
			goto out;
		}
		st.reservation = a.reservation;
		limiter_settle(l, &st);
	}
	int64_t t_res = 0, t_set = 0, t0 = mono_us();
	for (long i = 0; i < pairs; i++) {
		int64_t a0 = mono_us();
		if (limiter_reserve(l, &rq, &a) < 0 || !a.allowed) {
			fprintf(stderr, "limiter_bench: reserve failed at pair %ld\n", i);
			goto out;
		}
		int64_t a1 = mono_us();
		st.reservation = a.reservation;
		if (limiter_settle(l, &st) < 0) {
			fprintf(stderr, "limiter_bench: settle failed at pair %ld\n", i);
			goto out;
		}
		t_res += a1 - a0;
		t_set += mono_us() - a1;
	}
	double secs = (double)(mono_us() - t0) / 1e6;
	printf("limiter: %ld reserve+settle pairs in %.3f s: %.0f pairs/s, mean %.1f us per pair"
	       " (reserve %.1f us, settle %.1f us)\n",
	       pairs, secs, (double)pairs / secs, secs * 1e6 / (double)pairs,
	       (double)t_res / (double)pairs, (double)t_set / (double)pairs);
	rc = 0;
out:
	limiter_close(l);
	if (child > 0) {
		kill(child, SIGTERM);
		waitpid(child, NULL, 0);
		char lock[300];
		snprintf(lock, sizeof lock, "%s.lock", sock);
		unlink(lock);
		unlink(sock);
		rmdir(dir);
	}
	return rc;
}

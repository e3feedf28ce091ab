/* test_seccomp.c - the proxyd syscall filter (proxyd/seccomp.c).
 *
 * Every case runs in a forked child that installs the filter and then does
 * one thing; the parent checks how the child ended: exit 0 for what proxyd
 * needs (I/O, threads, SQLite WAL reads, ZeroMQ, libcurl + OpenSSL,
 * getaddrinfo), death by SIGSYS for what it must never do (execve, fork,
 * setuid, ptrace, W+X memory, foreign socket families, unknown ioctls,
 * signalling other processes), including from a thread that existed before
 * the filter (TSYNC). */
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <zmq.h>

#include "sandbox.h"
#include "t.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZER 1
#endif
#endif
#ifndef SANITIZER
#define SANITIZER 0
#endif

#define CHILD_TIMEOUT_S 20 /* SIGALRM ends a child that hangs */
#define EXIT_NO_FILTER 90  /* sandbox_install failed in the child */
#define EXIT_WRONG 91      /* an allowed call gave a wrong result */

static char tmpdir[] = "/tmp/test_seccomp.XXXXXX";

/* Installs the filter in this (child) process or exits EXIT_NO_FILTER. */
static void install_or_exit(void)
{
	char err[256];
	if (sandbox_install(err, sizeof err) < 0) {
		fprintf(stderr, "sandbox_install: %s\n", err);
		_exit(EXIT_NO_FILTER);
	}
}

/* Forks, runs fn in the child (which must exit), and returns the child's
 * wait status.  setup (optional) runs in the parent right after the fork,
 * e.g. to answer the child over a socket. */
static int run_child(void (*fn)(void), void (*setup)(pid_t))
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		alarm(CHILD_TIMEOUT_S);
		fn();
		_exit(EXIT_WRONG);
	}
	if (setup)
		setup(pid);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

static const char *describe(int st)
{
	static char b[64];
	if (st == -1)
		snprintf(b, sizeof b, "fork/wait failed");
	else if (WIFEXITED(st))
		snprintf(b, sizeof b, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(b, sizeof b, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(b, sizeof b, "status %#x", st);
	return b;
}

static void expect_exit0(const char *name, void (*fn)(void), void (*setup)(pid_t))
{
	T_BEGIN(name);
	int st = run_child(fn, setup);
	if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
		printf("  %s: child ended with %s, want exit 0\n", name, describe(st));
	CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void expect_sigsys(const char *name, void (*fn)(void))
{
	T_BEGIN(name);
	int st = run_child(fn, NULL);
	if (!(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS))
		printf("  %s: child ended with %s, want SIGSYS\n", name, describe(st));
	CHECK(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
}

/* ---- allowed ---- */

static void c_basic(void)
{
	install_or_exit();
	/* normal life: write, ids, clock, random, malloc, stdio, sleep */
	if (write(STDERR_FILENO, "", 0) < 0 || getpid() <= 0 || getppid() <= 0)
		_exit(EXIT_WRONG);
	if (getuid() != geteuid() && getuid() == 0)
		_exit(EXIT_WRONG);
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		_exit(EXIT_WRONG);
	unsigned char rnd[16];
	if (getentropy(rnd, sizeof rnd) < 0)
		_exit(EXIT_WRONG);
	char *big = malloc(8 << 20); /* mmap'd by malloc */
	if (!big)
		_exit(EXIT_WRONG);
	memset(big, 1, 8 << 20);
	free(big);
	struct timespec nap = {0, 1000000};
	nanosleep(&nap, NULL);
	/* our own signals: raise an ignored one */
	signal(SIGUSR1, SIG_IGN);
	if (raise(SIGUSR1) != 0 || kill(getpid(), 0) != 0)
		_exit(EXIT_WRONG);
	exit(0); /* through atexit (and LeakSanitizer in ASan builds) */
}

static void *thread_fn(void *arg)
{
	return (char *)arg + 1;
}

static void c_threads(void)
{
	install_or_exit();
	char x[2];
	pthread_t t;
	void *ret = NULL;
	if (pthread_create(&t, NULL, thread_fn, x) != 0 || pthread_join(t, &ret) != 0 || ret != x + 1)
		_exit(EXIT_WRONG);
	exit(0);
}

static void c_getaddrinfo(void)
{
	install_or_exit();
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_ADDRCONFIG}, *ai = NULL;
	/* /etc/hosts names localhost; a failure is fine, a kill is not */
	int r = getaddrinfo("localhost", "80", &hints, &ai);
	if (r == 0)
		freeaddrinfo(ai);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int fd6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int fdu = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int n = 0;
	if (fd < 0 || fdu < 0 || ioctl(fd, FIONREAD, &n) < 0)
		_exit(EXIT_WRONG);
	close(fd);
	if (fd6 >= 0)
		close(fd6);
	close(fdu);
	_exit(0);
}

static void c_mmap_ok(void)
{
	install_or_exit();
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || mprotect(p, 4096, PROT_READ) < 0 || munmap(p, 4096) < 0)
		_exit(EXIT_WRONG);
	_exit(0);
}

static char dbpath[256];

static void c_sqlite_wal_read(void)
{
	install_or_exit();
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		_exit(EXIT_WRONG);
	if (sqlite3_prepare_v2(db, "SELECT count(*), sum(v) FROM t", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW || sqlite3_column_int(s, 0) != 3 || sqlite3_column_int(s, 1) != 6) {
		fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
		_exit(EXIT_WRONG);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	_exit(0);
}

static char ipc_ep[300];

static void c_zmq_req(void)
{
	install_or_exit();
	void *ctx = zmq_ctx_new();
	void *req = ctx ? zmq_socket(ctx, ZMQ_REQ) : NULL;
	int zero = 0, tmo = 5000;
	char buf[8] = {0};
	if (!req || zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
	    zmq_setsockopt(req, ZMQ_RCVTIMEO, &tmo, sizeof tmo) < 0 || zmq_connect(req, ipc_ep) < 0 ||
	    zmq_send(req, "ping", 4, 0) != 4 || zmq_recv(req, buf, sizeof buf - 1, 0) != 4 ||
	    strcmp(buf, "pong") != 0)
		_exit(EXIT_WRONG);
	zmq_close(req);
	zmq_ctx_term(ctx);
	_exit(0);
}

/* Parent side of c_zmq_req: one REP round trip (created after the fork,
 * so the child never inherits a ZeroMQ context). */
static void zmq_rep_once(pid_t child)
{
	(void)child;
	void *ctx = zmq_ctx_new();
	void *rep = zmq_socket(ctx, ZMQ_REP);
	int zero = 0, tmo = 10000;
	char buf[8] = {0};
	zmq_setsockopt(rep, ZMQ_LINGER, &zero, sizeof zero);
	zmq_setsockopt(rep, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
	if (zmq_bind(rep, ipc_ep) == 0 && zmq_recv(rep, buf, sizeof buf - 1, 0) == 4)
		zmq_send(rep, "pong", 4, 0);
	/* let the reply leave before closing */
	struct timespec nap = {0, 100000000};
	nanosleep(&nap, NULL);
	zmq_close(rep);
	zmq_ctx_term(ctx);
}

static int http_lfd = -1, http_port;
static char target_url[128];
static long curl_want; /* HTTP code, or -CURLcode for an expected error */

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	*(size_t *)ud += sz * n;
	return sz * n;
}

static void c_curl(void)
{
	install_or_exit();
	CURL *c = curl_easy_init();
	size_t got = 0;
	long code = 0;
	if (!c)
		_exit(EXIT_WRONG);
	curl_easy_setopt(c, CURLOPT_URL, target_url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
	CURLcode r = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	if (curl_want > 0 ? (r != CURLE_OK || code != curl_want || got != 2) : r == CURLE_OK) {
		fprintf(stderr, "curl %s: %s, HTTP %ld, %zu bytes\n", target_url, curl_easy_strerror(r), code, got);
		_exit(EXIT_WRONG);
	}
	_exit(0);
}

/* Parent side of c_curl: accepts one connection, answers 200 "ok" (to
 * plain HTTP; a TLS ClientHello gets the same bytes, which fail the
 * handshake - the point there is that OpenSSL ran under the filter). */
static void http_answer_once(pid_t child)
{
	(void)child;
	struct pollfd p = {.fd = http_lfd, .events = POLLIN};
	if (poll(&p, 1, 10000) != 1)
		return;
	int fd = accept(http_lfd, NULL, NULL);
	if (fd < 0)
		return;
	char buf[4096];
	p.fd = fd;
	if (poll(&p, 1, 5000) == 1 && read(fd, buf, sizeof buf) > 0) {
		static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
		if (write(fd, resp, sizeof resp - 1) < 0)
			perror("write");
	}
	close(fd);
}

/* ---- forbidden ---- */

static void c_execve(void)
{
	install_or_exit();
	char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
	execve("/bin/true", argv, envp);
	_exit(EXIT_WRONG); /* neither killed nor run: an error return is wrong too */
}

static void c_fork(void)
{
	install_or_exit();
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	_exit(EXIT_WRONG);
}

static void c_setuid(void)
{
	install_or_exit();
	if (setuid(getuid()) < 0)
		perror("setuid");
	_exit(EXIT_WRONG);
}

static void c_ptrace(void)
{
	install_or_exit();
	ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	_exit(EXIT_WRONG);
}

static void c_mmap_wx(void)
{
	install_or_exit();
	mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	_exit(EXIT_WRONG);
}

static void c_mprotect_x(void)
{
	install_or_exit();
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		_exit(EXIT_WRONG);
	mprotect(p, 4096, PROT_READ | PROT_EXEC);
	_exit(EXIT_WRONG);
}

static void c_socket_packet(void)
{
	install_or_exit();
	socket(AF_PACKET, SOCK_RAW, 0);
	_exit(EXIT_WRONG);
}

static void c_ioctl_tiocsti(void)
{
	install_or_exit();
	char ch = 'x';
	ioctl(STDIN_FILENO, TIOCSTI, &ch);
	_exit(EXIT_WRONG);
}

static void c_kill_other(void)
{
	install_or_exit();
	kill(getppid(), 0);
	_exit(EXIT_WRONG);
}

static void c_listen(void)
{
	install_or_exit();
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	listen(fd, 1); /* a connection process never serves a second socket */
	_exit(EXIT_WRONG);
}

static int tsync_pipe[2];

static void *tsync_thread(void *arg)
{
	(void)arg;
	char b;
	if (read(tsync_pipe[0], &b, 1) != 1)
		_exit(EXIT_WRONG);
	char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
	execve("/bin/true", argv, envp);
	_exit(EXIT_WRONG);
}

/* A thread started before the filter is covered too (TSYNC). */
static void c_tsync(void)
{
	pthread_t t;
	if (pipe(tsync_pipe) < 0 || pthread_create(&t, NULL, tsync_thread, NULL) != 0)
		_exit(EXIT_WRONG);
	install_or_exit();
	if (write(tsync_pipe[1], "x", 1) != 1)
		_exit(EXIT_WRONG);
	pthread_join(t, NULL);
	_exit(EXIT_WRONG);
}

/* ---- fixtures ---- */

static int make_wal_db(sqlite3 **keep)
{
	snprintf(dbpath, sizeof dbpath, "%s/store.db", tmpdir);
	if (sqlite3_open(dbpath, keep) != SQLITE_OK)
		return -1;
	return sqlite3_exec(*keep,
			    "PRAGMA journal_mode=WAL; CREATE TABLE t(v INTEGER);"
			    "INSERT INTO t VALUES (1),(2),(3);",
			    NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int http_listen(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	http_lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (http_lfd < 0 || bind(http_lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(http_lfd, 4) < 0 ||
	    getsockname(http_lfd, (struct sockaddr *)&a, &al) < 0)
		return -1;
	http_port = ntohs(a.sin_port);
	return 0;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	/* proxyd initialises libcurl (and so OpenSSL) before the filter */
	curl_global_init(CURL_GLOBAL_DEFAULT);

	expect_exit0("seccomp-1.1 write/getpid/clock/malloc/raise", c_basic, NULL);
	expect_exit0("seccomp-1.2 threads (clone3 -> ENOSYS -> clone)", c_threads, NULL);
	expect_exit0("seccomp-1.3 getaddrinfo, sockets, FIONREAD", c_getaddrinfo, NULL);
	expect_exit0("seccomp-1.4 mmap rw, mprotect r", c_mmap_ok, NULL);

	sqlite3 *writer = NULL;
	T_BEGIN("seccomp-2.0 fixture db");
	CHECK(make_wal_db(&writer) == 0);
	expect_exit0("seccomp-2.1 SQLite read-only WAL read", c_sqlite_wal_read, NULL);
	sqlite3_close(writer);
	writer = NULL;
	/* the last connection closed: -wal and -shm are gone, a reader has to
	 * recreate the -shm under the filter */
	expect_exit0("seccomp-2.2 SQLite WAL read, no -shm yet", c_sqlite_wal_read, NULL);

	snprintf(ipc_ep, sizeof ipc_ep, "ipc://%s/l.sock", tmpdir);
	expect_exit0("seccomp-3.1 ZeroMQ REQ round trip over ipc", c_zmq_req, zmq_rep_once);

	T_BEGIN("seccomp-4.0 fixture http");
	CHECK(http_listen() == 0);
	snprintf(target_url, sizeof target_url, "http://localhost:%d/x", http_port);
	curl_want = 200;
	expect_exit0("seccomp-4.1 libcurl GET via localhost", c_curl, http_answer_once);
	snprintf(target_url, sizeof target_url, "https://127.0.0.1:%d/x", http_port);
	curl_want = -1;
	expect_exit0("seccomp-4.2 libcurl+OpenSSL handshake attempt", c_curl, http_answer_once);

	expect_sigsys("seccomp-5.1 execve", c_execve);
	expect_sigsys("seccomp-5.2 setuid", c_setuid);
	expect_sigsys("seccomp-5.3 mmap W+X", c_mmap_wx);
	expect_sigsys("seccomp-5.4 mprotect PROT_EXEC", c_mprotect_x);
	expect_sigsys("seccomp-5.5 socket(AF_PACKET)", c_socket_packet);
	expect_sigsys("seccomp-5.6 ioctl(TIOCSTI)", c_ioctl_tiocsti);
	expect_sigsys("seccomp-5.7 listen", c_listen);
	expect_sigsys("seccomp-5.8 execve from a pre-existing thread (TSYNC)", c_tsync);
	if (!SANITIZER) {
		/* sanitizer builds allow these for the runtime (see seccomp.c) */
		expect_sigsys("seccomp-5.9 fork", c_fork);
		expect_sigsys("seccomp-5.10 ptrace", c_ptrace);
		expect_sigsys("seccomp-5.11 kill another process", c_kill_other);
	} else {
		printf("seccomp-5.9..5.11 (fork, ptrace, kill other) not checked in a sanitizer build\n");
	}

	/* the parent itself never installed anything */
	T_BEGIN("seccomp-6.1 parent unfiltered");
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	int st = -1;
	waitpid(p, &st, 0);
	CHECK(p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);

	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("note: could not remove %s\n", tmpdir);
	if (http_lfd >= 0)
		close(http_lfd);
	curl_global_cleanup();
	return T_END();
}

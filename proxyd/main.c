/* proxyd - serves one client connection per process (DESIGN.md §1).
 *
 *   proxyd [options]                 the connection is fd 0/1 (inetd,
 *                                    systemd StandardInput=socket), or fd 3
 *                                    when LISTEN_FDS=1 (systemd Accept=yes)
 *   proxyd --listen ADDR:PORT [...]  the built-in listener: accept and fork
 *                                    one child per connection
 *
 * Order of operations in every child: read the master key (parent, while
 * privileged), open the store read-only, drop to --user when root, harden
 * (no core, not dumpable, no new privileges), and only then read a byte
 * from the client. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "handler.h"
#include "paths.h"
#include "privdrop.h"
#include "sandbox.h"
#include "store.h"
#include "upstream.h"
#include "util.h"
#include "vault.h"

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* A connection process told to stop: at once when idle between requests,
 * else after the request in flight. */
static void on_child_stop(int sig)
{
	(void)sig;
	if (!handler_busy)
		_exit(0);
	g_stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: proxyd [options]\n"
		"  (no --listen: serve the connection on fd 0/1, or fd 3 with LISTEN_FDS=1)\n"
		"  --listen ADDR:PORT        built-in listener (fork per connection)\n"
		"  --accept-mode fork|exec   listener: fork only (default) or exec per connection\n"
		"  --max-conns N             listener: concurrent connections (default %d)\n"
		"  --grace-ms N              listener: in-flight grace on SIGTERM (default %d)\n"
		"  --user USER               drop to USER when started as root\n"
		"  --home DIR --db PATH --master-key-file PATH   state location\n"
		"  --limiter ENDPOINT        limiterd ZeroMQ endpoint (or $LLMPROXY_LIMITER)\n"
		"  --limiter-timeout-ms N    wait for limiterd (default %d)\n"
		"  --fail-open               pass requests when limiterd does not answer\n"
		"  --connect-timeout-ms N    upstream connect (default %d)\n"
		"  --first-byte-timeout-ms N upstream answer head (default %d)\n"
		"  --request-timeout-ms N    whole non-streamed answer (default %d)\n"
		"  --stream-idle-timeout-ms N silence inside a stream (default %d)\n"
		"  --max-attempts N          upstream routes tried per request (default %d)\n"
		"  --max-body-bytes N --max-head-bytes N --max-headers N --max-requests N\n"
		"  --head-timeout-ms N --body-timeout-ms N --write-timeout-ms N --idle-timeout-ms N\n"
		"  --completion-estimate N   tokens reserved without max_tokens (default %d)\n"
		"  --no-seccomp              do not install the syscall filter\n",
		PROXYD_MAX_CONNS, PROXYD_GRACE_MS, PROXYD_LIMITER_TIMEOUT_MS, PROXYD_CONNECT_TIMEOUT_MS,
		PROXYD_FIRST_BYTE_TIMEOUT_MS, PROXYD_REQUEST_TIMEOUT_MS, PROXYD_STREAM_IDLE_TIMEOUT_MS,
		PROXYD_MAX_ATTEMPTS, PROXYD_DEFAULT_COMPLETION_ESTIMATE);
}

static int64_t num_arg(const char *opt, const char *v, int64_t min)
{
	int64_t n;
	if (!v || parse_i64(v, &n) < 0 || n < min)
		fatal("%s needs a number >= %lld", opt, (long long)min);
	return n;
}

struct opts {
	const char *home, *db, *key;
	int inetd;
};

static void parse_args(int argc, char **argv, struct proxyd_config *c, struct opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && (v || (fatal("%s needs a value", name), 0)) && ++i)
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "--fail-open") == 0) {
			c->fail_open = 1;
		} else if (strcmp(a, "--no-seccomp") == 0) {
			c->seccomp = 0;
		} else if (strcmp(a, "--inetd") == 0) {
			o->inetd = 1;
		} else if (OPT("--listen")) {
			c->listen = v;
		} else if (OPT("--accept-mode")) {
			if (strcmp(v, "fork") == 0)
				c->accept_mode = ACCEPT_FORK;
			else if (strcmp(v, "exec") == 0)
				c->accept_mode = ACCEPT_EXEC;
			else
				fatal("--accept-mode is fork or exec");
		} else if (OPT("--max-conns")) {
			c->max_conns = (int)num_arg(a, v, 1);
		} else if (OPT("--grace-ms")) {
			c->grace_ms = (int)num_arg(a, v, 0);
		} else if (OPT("--user")) {
			c->user = v;
		} else if (OPT("--home")) {
			o->home = v;
		} else if (OPT("--db")) {
			o->db = v;
		} else if (OPT("--master-key-file")) {
			o->key = v;
		} else if (OPT("--limiter")) {
			c->limiter = v;
		} else if (OPT("--limiter-timeout-ms")) {
			c->limiter_timeout_ms = (int)num_arg(a, v, 1);
		} else if (OPT("--connect-timeout-ms")) {
			c->connect_timeout_ms = (int)num_arg(a, v, 1);
		} else if (OPT("--first-byte-timeout-ms")) {
			c->first_byte_timeout_ms = (int)num_arg(a, v, 1);
		} else if (OPT("--request-timeout-ms")) {
			c->request_timeout_ms = (int)num_arg(a, v, 1);
		} else if (OPT("--stream-idle-timeout-ms")) {
			c->stream_idle_timeout_ms = (int)num_arg(a, v, 1);
		} else if (OPT("--max-attempts")) {
			c->max_attempts = (int)num_arg(a, v, 1);
		} else if (OPT("--completion-estimate")) {
			c->completion_estimate = num_arg(a, v, 0);
		} else if (OPT("--max-body-bytes")) {
			c->http.max_body_bytes = (size_t)num_arg(a, v, 1);
		} else if (OPT("--max-head-bytes")) {
			c->http.max_head_bytes = (size_t)num_arg(a, v, 256);
		} else if (OPT("--max-headers")) {
			c->http.max_headers = (size_t)num_arg(a, v, 1);
		} else if (OPT("--max-requests")) {
			c->http.max_requests = (int)num_arg(a, v, 1);
		} else if (OPT("--head-timeout-ms")) {
			c->http.head_timeout_ms = (int)num_arg(a, v, 1);
		} else if (OPT("--body-timeout-ms")) {
			c->http.body_timeout_ms = (int)num_arg(a, v, 1);
		} else if (OPT("--write-timeout-ms")) {
			c->http.write_timeout_ms = (int)num_arg(a, v, 1);
		} else if (OPT("--idle-timeout-ms")) {
			c->http.idle_timeout_ms = (int)num_arg(a, v, 1);
		} else {
			usage(stderr);
			fatal("unknown option %s", a);
		}
#undef OPT
	}
}

/* Serves one connection in this process, then exits. */
static _Noreturn void serve_one(const struct proxyd_config *cfg, int rfd, int wfd)
{
	char err[256];
	struct sigaction sa = {.sa_handler = on_child_stop};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);

	struct store *st = store_open(cfg->db_path, STORE_RO, err, sizeof err);
	if (!st)
		fatal("%s", err);
	/* a first read opens the -wal and -shm files while we may still read
	 * them; the dropped process keeps using those descriptors */
	if (store_schema_version(st) <= 0)
		fatal("cannot read the store %s", cfg->db_path);
	if (cfg->user && geteuid() == 0 && privdrop_to(cfg->uid, cfg->gid, err, sizeof err) < 0)
		fatal("%s", err);
	harden_process();
	/* after the libraries initialised (main) and the store is open: from
	 * here a syscall outside the allow-list kills this connection only */
	if (cfg->seccomp && sandbox_install(err, sizeof err) < 0)
		fatal("%s", err);
	handler_serve(cfg, st, rfd, wfd, &g_stop);
	store_close(st);
	_exit(0);
}

static int listen_on(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || !colon[1])
		fatal("--listen wants ADDR:PORT, e.g. 127.0.0.1:8132");
	size_t hl = (size_t)(colon - spec);
	if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
		spec++;
		hl -= 2;
	}
	if (hl >= sizeof host)
		fatal("--listen address too long");
	memcpy(host, spec, hl);
	host[hl] = 0;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai;
	int r = getaddrinfo(hl ? host : NULL, colon + 1, &hints, &ai);
	if (r)
		fatal("--listen %s: %s", spec, gai_strerror(r));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fatal("socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		fatal("bind %s: %s", spec, strerror(errno));
	freeaddrinfo(ai);
	if (listen(fd, 1024) < 0)
		fatal("listen: %s", strerror(errno));
	return fd;
}

/* The listener's children, so that shutdown signals only them. */
static pid_t *kids;
static int nkids;

static void kid_add(pid_t p) { kids[nkids++] = p; }

static void reap(int *live)
{
	int status;
	pid_t p;
	while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < nkids; i++)
			if (kids[i] == p) {
				kids[i] = kids[--nkids];
				(*live)--;
				break;
			}
		if (WIFSIGNALED(status))
			log_msg("connection process %ld killed by signal %d", (long)p, WTERMSIG(status));
	}
}

static void signal_kids(int sig)
{
	for (int i = 0; i < nkids; i++)
		kill(kids[i], sig);
}

/* The built-in listener: one forked (or exec'd) proxyd per connection. */
static _Noreturn void run_listener(const struct proxyd_config *cfg, char **argv)
{
	int lfd = listen_on(cfg->listen);
	int live = 0;
	kids = xcalloc((size_t)cfg->max_conns, sizeof *kids);
	struct sigaction sa = {.sa_handler = on_stop};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	log_msg("listening on %s (accept mode %s, at most %d connections)", cfg->listen,
		cfg->accept_mode == ACCEPT_EXEC ? "exec" : "fork", cfg->max_conns);

	while (!g_stop) {
		reap(&live);
		struct pollfd pfd = {.fd = lfd, .events = POLLIN};
		if (live >= cfg->max_conns) {
			poll(NULL, 0, 10); /* at the cap: let the backlog wait */
			continue;
		}
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
				log_msg("accept: %s", strerror(errno));
			if (errno == EMFILE || errno == ENFILE)
				poll(NULL, 0, 100);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pid_t pid = fork();
		if (pid < 0) {
			log_msg("fork: %s", strerror(errno));
			close(fd);
			continue;
		}
		if (pid == 0) {
			close(lfd);
			signal(SIGINT, SIG_DFL);
			if (cfg->accept_mode == ACCEPT_EXEC) {
				if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0)
					_exit(1);
				close(fd);
				/* same options; --inetd makes the new image serve fd 0/1 */
				int argc = 0;
				while (argv[argc])
					argc++;
				char **nargv = xcalloc((size_t)argc + 2, sizeof *nargv);
				for (int i = 0; i < argc; i++)
					nargv[i] = argv[i];
				nargv[argc] = "--inetd";
				/* the real path, so ps shows proxyd rather than exe */
				char self[4096];
				ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
				if (n > 0) {
					self[n] = 0;
					execv(self, nargv);
				}
				execv("/proc/self/exe", nargv);
				_exit(127);
			}
			serve_one(cfg, fd, fd);
		}
		close(fd);
		kid_add(pid);
		live++;
	}

	close(lfd);
	signal_kids(SIGTERM); /* idle ones exit now, busy ones after their request */
	int64_t deadline = mono_ms() + cfg->grace_ms;
	while (live > 0 && mono_ms() < deadline) {
		reap(&live);
		if (live > 0)
			poll(NULL, 0, 20);
	}
	if (live > 0) {
		log_msg("grace period over: stopping %d connection(s)", live);
		signal_kids(SIGKILL);
	}
	exit(0);
}

int main(int argc, char **argv)
{
	struct proxyd_config cfg;
	struct opts o = {0};
	char err[512];

	log_set_prog("proxyd");
	memset(&cfg, 0, sizeof cfg);
	http_limits_default(&cfg.http);
	cfg.limiter_timeout_ms = PROXYD_LIMITER_TIMEOUT_MS;
	cfg.connect_timeout_ms = PROXYD_CONNECT_TIMEOUT_MS;
	cfg.first_byte_timeout_ms = PROXYD_FIRST_BYTE_TIMEOUT_MS;
	cfg.request_timeout_ms = PROXYD_REQUEST_TIMEOUT_MS;
	cfg.stream_idle_timeout_ms = PROXYD_STREAM_IDLE_TIMEOUT_MS;
	cfg.max_attempts = PROXYD_MAX_ATTEMPTS;
	cfg.completion_estimate = PROXYD_DEFAULT_COMPLETION_ESTIMATE;
	cfg.max_conns = PROXYD_MAX_CONNS;
	cfg.grace_ms = PROXYD_GRACE_MS;
	cfg.seccomp = 1;
	cfg.limiter = getenv("LLMPROXY_LIMITER");
	parse_args(argc, argv, &cfg, &o);
	signal(SIGPIPE, SIG_IGN);

	struct paths p;
	if (paths_resolve(&p, o.home, o.db, o.key, err, sizeof err) < 0)
		fatal("%s", err);
	cfg.db_path = xstrdup(p.db);
	cfg.master_key_path = xstrdup(p.master_key);
	if (vault_read_master_key(p.master_key, cfg.master, err, sizeof err) < 0)
		fatal("%s", err);

	/* the vkey hashing key and the master check need the store once */
	struct store *st = store_open(p.db, STORE_RO, err, sizeof err);
	if (!st)
		fatal("%s", err);
	int r = vault_check_master(st, cfg.master, 0);
	if (r == -1)
		fatal("the master key %s does not match the database %s", p.master_key, p.db);
	if (r < 0)
		fatal("cannot check the master key against %s", p.db);
	if (vault_vkey_hash_key(st, cfg.master, 0, cfg.vkey_hkey, err, sizeof err) < 0)
		fatal("%s", err);
	store_close(st);

	if (cfg.user && privdrop_lookup(cfg.user, &cfg.uid, &cfg.gid) < 0)
		fatal("unknown user %s", cfg.user);
	if (cfg.user && geteuid() != 0)
		log_msg("not root: --user %s ignored", cfg.user);
	upstream_global_init();

	if (cfg.listen && !o.inetd)
		run_listener(&cfg, argv);

	const char *lfds = getenv("LISTEN_FDS"), *lpid = getenv("LISTEN_PID");
	if (!o.inetd && lfds && lpid && atoi(lfds) == 1 && atol(lpid) == (long)getpid()) {
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDNAMES");
		serve_one(&cfg, 3, 3);
	}
	serve_one(&cfg, 0, 1);
}

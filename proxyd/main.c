/* proxyd - serves one client connection per process (DESIGN.md §1).
 *
 *   proxyd [options]                 the connection is fd 0/1 (inetd,
 *                                    systemd StandardInput=socket), or fd 3
 *                                    when LISTEN_FDS=1 (systemd Accept=yes)
 *   proxyd --listen ADDR:PORT [...]  the built-in listener
 *
 * Order of operations in every connection process: the master key is read
 * (by the parent, while privileged), the store is opened read-only and the
 * limiter socket connected, privileges drop to --user when root, the
 * process hardens itself (no core, not dumpable, no new privileges) and
 * installs its seccomp filter, and only then reads a byte from a client.
 *
 * The listener's fork mode does all of that ahead of need: it keeps
 * --spares prepared processes blocked in accept(); each takes exactly one
 * connection, tells the listener (which forks the next), serves it and
 * exits.  Exec mode accepts in the listener and execs a fresh proxyd per
 * connection, which is what systemd's Accept=yes costs. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "handler.h"
#include "limit_client.h"
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

/* The client connection of this process, once it has one. */
static volatile int g_client_fd = -1;

/* A connection process told to stop.  Without a client yet (a spare): at
 * once.  Idle between requests: the read side is shut, so the request
 * loop ends the normal way (the limiter hears the connection closed).
 * Busy: after the request in flight. */
static void on_child_stop(int sig)
{
	(void)sig;
	g_stop = 1;
	if (g_client_fd < 0)
		return; /* a spare: its accept() is interrupted and it leaves */
	if (!handler_busy && shutdown(g_client_fd, SHUT_RD) < 0)
		_exit(0); /* not a socket (inetd pipes): nothing to finish */
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: proxyd [options]\n"
		"  (no --listen: serve the connection on fd 0/1, or fd 3 with LISTEN_FDS=1)\n"
		"  --listen ADDR:PORT        built-in listener (fork per connection)\n"
		"  --accept-mode fork|exec   listener: fork only (default) or exec per connection\n"
		"  --max-conns N             listener: concurrent connections (default %d)\n"
		"  --spares N                listener (fork): processes prepared ahead (default %d)\n"
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
		PROXYD_MAX_CONNS, PROXYD_SPARES, PROXYD_GRACE_MS, PROXYD_LIMITER_TIMEOUT_MS, PROXYD_CONNECT_TIMEOUT_MS,
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
		} else if (OPT("--spares")) {
			c->spares = (int)num_arg(a, v, 1);
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

/* What a connection process holds before its client's first byte. */
struct conn_env {
	struct store *st;
	struct limiter *lim;
};

/* Everything a connection process does before it may read a client byte:
 * open the store (and its WAL files) and the limiter socket while still
 * privileged, then drop to --user and harden.  Fatal errors end only this
 * process. */
static void prepare_conn(const struct proxyd_config *cfg, struct conn_env *env)
{
	char err[256];
	struct sigaction sa = {.sa_handler = on_child_stop};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	/* a terminal's Ctrl-C reaches the whole process group; the listener
	 * turns it into the graceful SIGTERM */
	signal(SIGINT, SIG_IGN);

	env->st = store_open(cfg->db_path, STORE_RO, err, sizeof err);
	if (!env->st)
		fatal("%s", err);
	/* a first read opens the -wal and -shm files while we may still read
	 * them; the dropped process keeps using those descriptors */
	if (store_schema_version(env->st) <= 0)
		fatal("cannot read the store %s", cfg->db_path);
	env->lim = cfg->limiter ? limiter_open(cfg->limiter, cfg->limiter_timeout_ms) : NULL;
	if (env->lim)
		limiter_connect(env->lim); /* its I/O thread starts outside the sandbox */
	if (cfg->user && geteuid() == 0 && privdrop_to(cfg->uid, cfg->gid, err, sizeof err) < 0)
		fatal("%s", err);
	harden_process();
}

/* From here a syscall outside the allow-list kills this process only.
 * Installed after the libraries initialised (main) and the store and
 * limiter are open. */
static void sandbox(const struct proxyd_config *cfg)
{
	char err[256];
	if (cfg->seccomp && sandbox_install(err, sizeof err) < 0)
		fatal("%s", err);
}

/* Serves the connection on rfd/wfd with a prepared, sandboxed
 * environment, then exits. */
static _Noreturn void serve_conn(const struct proxyd_config *cfg, struct conn_env *env, int rfd,
				 int wfd)
{
	g_client_fd = rfd;
	handler_serve(cfg, env->st, env->lim, rfd, wfd, &g_stop);
	limiter_close(env->lim);
	store_close(env->st);
	_exit(0);
}

/* Serves one connection in this process, then exits. */
static _Noreturn void serve_one(const struct proxyd_config *cfg, int rfd, int wfd)
{
	struct conn_env env;
	prepare_conn(cfg, &env);
	sandbox(cfg);
	serve_conn(cfg, &env, rfd, wfd);
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

/* The listener's children, so that shutdown signals only them; a spare
 * is prepared and waiting in accept(), the others serve a connection. */
struct kid {
	pid_t pid;
	int spare;
};
static struct kid *kids;
static int nkids, nspare;
static int64_t next_spare_ms; /* backoff after a spare died unused */

static void kid_add(pid_t p, int spare)
{
	kids[nkids].pid = p;
	kids[nkids++].spare = spare;
	nspare += spare;
}

static struct kid *kid_find(pid_t p)
{
	for (int i = 0; i < nkids; i++)
		if (kids[i].pid == p)
			return &kids[i];
	return NULL;
}

static void reap(void)
{
	int status;
	pid_t p;
	while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
		struct kid *k = kid_find(p);
		if (k) {
			if (k->spare) {
				nspare--;
				/* it failed before it got a connection: do not
				 * re-fork in a tight loop */
				if (!g_stop && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
					next_spare_ms = mono_ms() + 1000;
			}
			*k = kids[--nkids];
		}
		if (WIFSIGNALED(status))
			log_msg("connection process %ld killed by signal %d", (long)p, WTERMSIG(status));
	}
}

static void signal_kids(int sig)
{
	for (int i = 0; i < nkids; i++)
		kill(kids[i].pid, sig);
}

/* A pre-forked connection process: prepared before any client exists, it
 * accepts exactly one connection, tells the listener (which forks the
 * next spare), serves it and exits.  The fork, the store and limiter
 * set-up and the privilege drop are then off the client's path. */
static _Noreturn void run_spare(const struct proxyd_config *cfg, int lfd, int notify)
{
	struct conn_env env;
	prepare_conn(cfg, &env);
	sandbox(cfg); /* building and loading the filter costs ms: not on the client's time */
	int fd = -1;
	/* SIGTERM (no SA_RESTART) interrupts accept(): leave without a client */
	while (!g_stop && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
			log_msg("accept: %s", strerror(errno));
			_exit(1);
		}
	}
	if (fd < 0)
		_exit(0);
	close(lfd);
	pid_t me = getpid();
	if (write(notify, &me, sizeof me) != (ssize_t)sizeof me)
		log_msg("cannot tell the listener a connection was taken");
	close(notify);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	serve_conn(cfg, &env, fd, fd);
}

/* exec mode: the new image serves fd 0/1 with the same options (--inetd). */
static _Noreturn void exec_conn(char **argv, int fd)
{
	if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0)
		_exit(1);
	close(fd);
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

/* Marks the spares whose pids arrived on the notify pipe as busy. */
static void drain_notify(int fd)
{
	pid_t taken[64];
	ssize_t n;
	while ((n = read(fd, taken, sizeof taken)) > 0) {
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(pid_t); i++) {
			struct kid *k = kid_find(taken[i]);
			if (k && k->spare) {
				k->spare = 0;
				nspare--;
			}
		}
	}
}

static int read_keys(struct proxyd_config *cfg, unsigned char master[MASTER_KEY_BYTES],
		     unsigned char hkey[32], char *err, size_t errlen);

/* rotate-master-key replaces the key file: take the new key (once it
 * matches the store) and replace the spares prepared with the old one. */
static void follow_master_key(struct proxyd_config *cfg, struct stat *seen)
{
	struct stat sb;
	char err[256];
	if (stat(cfg->master_key_path, &sb) < 0 ||
	    (sb.st_ino == seen->st_ino && sb.st_mtim.tv_sec == seen->st_mtim.tv_sec &&
	     sb.st_mtim.tv_nsec == seen->st_mtim.tv_nsec))
		return;
	unsigned char master[MASTER_KEY_BYTES], hkey[32];
	if (read_keys(cfg, master, hkey, err, sizeof err) < 0) {
		log_msg("master key file changed but is not usable yet: %s", err);
		*seen = sb; /* say it once; the next change is tried again */
		return;
	}
	memcpy(cfg->master, master, sizeof master);
	memcpy(cfg->vkey_hkey, hkey, sizeof hkey);
	wipe(master, sizeof master);
	wipe(hkey, sizeof hkey);
	*seen = sb;
	log_msg("master key changed: using the new key for new connections");
	for (int i = 0; i < nkids; i++)
		if (kids[i].spare)
			kill(kids[i].pid, SIGTERM); /* no client yet: they just exit */
}

/* fork mode: keeps cfg->spares prepared processes waiting in accept(),
 * within the cap of cfg->max_conns processes in all. */
static void fork_loop(struct proxyd_config *cfg, int lfd)
{
	int pfd[2];
	struct stat seen;
	if (pipe2(pfd, O_CLOEXEC) < 0 || fcntl(pfd[0], F_SETFL, O_NONBLOCK) < 0)
		fatal("pipe: %s", strerror(errno));
	if (stat(cfg->master_key_path, &seen) < 0)
		memset(&seen, 0, sizeof seen);
	sigset_t stops, old;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	while (!g_stop) {
		drain_notify(pfd[0]); /* before reap: a quick child may be gone already */
		reap();
		follow_master_key(cfg, &seen);
		while (nspare < cfg->spares && nkids < cfg->max_conns && mono_ms() >= next_spare_ms &&
		       !g_stop) {
			/* a stop signal must not land between fork and the
			 * child's own handlers */
			sigprocmask(SIG_BLOCK, &stops, &old);
			pid_t pid = fork();
			if (pid == 0) {
				g_stop = 0;
				close(pfd[0]);
				struct sigaction sa = {.sa_handler = on_child_stop};
				sigemptyset(&sa.sa_mask);
				sigaction(SIGTERM, &sa, NULL);
				signal(SIGINT, SIG_IGN);
				sigprocmask(SIG_SETMASK, &old, NULL);
				run_spare(cfg, lfd, pfd[1]);
			}
			sigprocmask(SIG_SETMASK, &old, NULL);
			if (pid < 0) {
				log_msg("fork: %s", strerror(errno));
				next_spare_ms = mono_ms() + 100;
				break;
			}
			kid_add(pid, 1);
		}
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		poll(&p, 1, 100);
	}
	close(pfd[0]);
	close(pfd[1]);
}

/* exec mode: accept here, fork and exec a fresh proxyd per connection. */
static void exec_loop(const struct proxyd_config *cfg, int lfd, char **argv)
{
	while (!g_stop) {
		reap();
		if (nkids >= cfg->max_conns) {
			poll(NULL, 0, 10); /* at the cap: let the backlog wait */
			continue;
		}
		struct pollfd pfd = {.fd = lfd, .events = POLLIN};
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				poll(NULL, 0, 100);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pid_t pid = fork();
		if (pid == 0) {
			close(lfd);
			signal(SIGINT, SIG_DFL);
			exec_conn(argv, fd);
		}
		if (pid < 0)
			log_msg("fork: %s", strerror(errno));
		else
			kid_add(pid, 0);
		close(fd);
	}
}

/* The built-in listener: one proxyd process per connection. */
static _Noreturn void run_listener(struct proxyd_config *cfg, char **argv)
{
	int lfd = listen_on(cfg->listen);
	kids = xcalloc((size_t)cfg->max_conns + 1, sizeof *kids);
	struct sigaction sa = {.sa_handler = on_stop};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	log_msg("listening on %s (accept mode %s, at most %d connections)", cfg->listen,
		cfg->accept_mode == ACCEPT_EXEC ? "exec" : "fork", cfg->max_conns);

	if (cfg->accept_mode == ACCEPT_EXEC)
		exec_loop(cfg, lfd, argv);
	else
		fork_loop(cfg, lfd);

	close(lfd);
	signal_kids(SIGTERM); /* idle ones exit now, busy ones after their request */
	int64_t deadline = mono_ms() + cfg->grace_ms;
	while (nkids > 0 && mono_ms() < deadline) {
		reap();
		if (nkids > 0)
			poll(NULL, 0, 20);
	}
	if (nkids > 0) {
		log_msg("grace period over: stopping %d connection(s)", nkids);
		signal_kids(SIGKILL);
	}
	exit(0);
}

/* Reads the master key file, checks it against the store and loads the
 * virtual-key hashing key.  0 ok, -1 with err filled. */
static int read_keys(struct proxyd_config *cfg, unsigned char master[MASTER_KEY_BYTES],
		     unsigned char hkey[32], char *err, size_t errlen)
{
	int rc = -1;
	if (vault_read_master_key(cfg->master_key_path, master, err, errlen) < 0)
		return -1;
	struct store *st = store_open(cfg->db_path, STORE_RO, err, errlen);
	if (!st)
		goto out;
	int r = vault_check_master(st, master, 0);
	if (r == -1)
		snprintf(err, errlen, "the master key %s does not match the database %s",
			 cfg->master_key_path, cfg->db_path);
	else if (r < 0)
		snprintf(err, errlen, "cannot check the master key against %s", cfg->db_path);
	else if (vault_vkey_hash_key(st, master, 0, hkey, err, errlen) == 0)
		rc = 0;
	store_close(st);
out:
	if (rc < 0)
		wipe(master, MASTER_KEY_BYTES);
	return rc;
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
	cfg.spares = PROXYD_SPARES;
	cfg.seccomp = 1;
	cfg.limiter = getenv("LLMPROXY_LIMITER");
	parse_args(argc, argv, &cfg, &o);
	signal(SIGPIPE, SIG_IGN);

	struct paths p;
	if (paths_resolve(&p, o.home, o.db, o.key, err, sizeof err) < 0)
		fatal("%s", err);
	cfg.db_path = xstrdup(p.db);
	cfg.master_key_path = xstrdup(p.master_key);
	if (read_keys(&cfg, cfg.master, cfg.vkey_hkey, err, sizeof err) < 0)
		fatal("%s", err);

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

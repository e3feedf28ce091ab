/* cmd_serve.c - `llmproxy-admin serve`: a small supervisor for hosts
 * without systemd.  Starts limiterd (when installed next to us) and
 * `proxyd --listen` (the accept-and-fork listener), forwards SIGINT and
 * SIGTERM to both and exits with proxyd's status.  Only paths go into the
 * children's argv, never a secret. */
#include "admin.h"

#include "util.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SERVE_DEFAULT_LISTEN "127.0.0.1:8132"
#define SERVE_MAX_ARGS 64
#define SERVE_SOCKET_WAIT_MS 3000
#define SERVE_STOP_WAIT_MS 5000
#define SERVE_POLL_MS 20
#define SERVE_RESTART_MIN_MS 100     /* limiterd restart backoff ... */
#define SERVE_RESTART_MAX_MS 10000   /* ... doubling up to this */
#define SERVE_RESTART_RESET_MS 30000 /* up this long: back to the minimum */

static const char usage_serve[] =
	"usage: llmproxy-admin serve [--listen ADDR:PORT] [--user USER] [--max-conns N]\n"
	"           [--any-proxyd-flag VALUE]...\n"
	"\nRuns the proxy without systemd: creates the home directory, master key and\n"
	"database if missing, starts limiterd (ipc://<home>/run/limiterd.sock) and\n"
	"proxyd listening on ADDR:PORT (default " SERVE_DEFAULT_LISTEN "), forwards\n"
	"SIGINT/SIGTERM to both and stops when proxyd stops.  Other --flag value\n"
	"pairs are passed to proxyd unchanged (e.g. --first-byte-timeout-ms 500).\n"
	"  --user       run each connection's process as this user (when root)\n"
	"  --max-conns  cap on concurrent connections\n";

static volatile sig_atomic_t g_proxyd = 0, g_limiterd = 0, g_stopping = 0;

/* Stops proxyd only: limiterd keeps settling the requests in flight during
 * proxyd's grace period and is stopped once proxyd has exited. */
static void forward(int sig)
{
	int saved = errno;
	g_stopping = 1;
	if (g_proxyd > 0)
		kill((pid_t)g_proxyd, sig == SIGINT ? SIGTERM : sig);
	errno = saved;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* own_group: out of the terminal's process group, so a Ctrl-C reaches it
 * only through us, in order. */
static pid_t spawn(const char *path, char *const argv[], int own_group)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (own_group)
			setpgid(0, 0);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execv(path, argv);
		fprintf(stderr, ADMIN_PROG ": cannot run %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	return pid;
}

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

/* SIGTERM, then SIGKILL after SERVE_STOP_WAIT_MS; reaps the child. */
static int stop_child(pid_t pid)
{
	int status = 0;
	kill(pid, SIGTERM);
	for (int waited = 0; waited < SERVE_STOP_WAIT_MS; waited += SERVE_POLL_MS) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return status;
		sleep_ms(SERVE_POLL_MS);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

/* Spawns limiterd on ep and waits (bounded) for its socket, so the first
 * request does not fail closed.  0 ok, <0 after reporting. */
static int start_limiterd(const char *path, const char *ep, const char *sock, const char *db,
			  const char *user)
{
	char *largv[] = {"limiterd", "--socket", (char *)ep, "--db", (char *)db, NULL};
	pid_t lp = spawn(path, largv, 1);
	if (lp < 0)
		return admin_err(-1, "cannot fork: %s", strerror(errno));
	g_limiterd = lp;
	int status;
	for (int w = 0; w < SERVE_SOCKET_WAIT_MS; w += SERVE_POLL_MS) {
		struct stat sb;
		if (stat(sock, &sb) == 0 && S_ISSOCK(sb.st_mode)) {
			/* proxyds dropped to --user must be able to connect, and
			 * nobody else: the socket becomes that user's */
			struct passwd *pw = user ? getpwnam(user) : NULL;
			if (pw && (chown(sock, pw->pw_uid, pw->pw_gid) < 0 || chmod(sock, 0600) < 0))
				fprintf(stderr, ADMIN_PROG ": warning: cannot hand %s to %s: %s\n", sock,
					user, strerror(errno));
			return 0;
		}
		if (waitpid(lp, &status, WNOHANG) == lp) {
			g_limiterd = 0;
			return admin_err(-1, "limiterd exited at start (status %d)", exit_code(status));
		}
		sleep_ms(SERVE_POLL_MS);
	}
	fprintf(stderr, ADMIN_PROG ": warning: limiterd has not created %s yet; starting proxyd anyway\n",
		sock);
	return 0;
}

static int check_listen(const char *s)
{
	const char *colon = strrchr(s, ':');
	int64_t port;
	if (!colon || colon == s || parse_i64(colon + 1, &port) < 0 || port < 1 || port > 65535)
		return admin_err(EXIT_USAGE, "serve: --listen must look like ADDR:PORT (got '%.60s')", s);
	return 0;
}

int cmd_serve(struct admin *a, int argc, char **argv)
{
	const char *listen = SERVE_DEFAULT_LISTEN, *user = NULL, *max_conns = NULL;
	char *extra[SERVE_MAX_ARGS];
	int nextra = 0, rc;
	char exe[PATH_MAX], dir[PATH_MAX], proxyd[PATH_MAX + 16], limiterd[PATH_MAX + 16];
	char tokdir[PATHS_MAX + 16];
	char rundir[PATHS_MAX + 8], sock[PATHS_MAX + 32], ep[PATHS_MAX + 40];
	struct sigaction sa;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char **slot = NULL;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(usage_serve, stdout);
			return 0;
		}
		if (strcmp(arg, "--json") == 0) {
			a->json = 1;
			continue;
		}
		if (strcmp(arg, "--listen") == 0)
			slot = &listen;
		else if (strcmp(arg, "--user") == 0)
			slot = &user;
		else if (strcmp(arg, "--max-conns") == 0)
			slot = &max_conns;
		else if (strcmp(arg, "--home") == 0)
			slot = &a->opt_home;
		else if (strcmp(arg, "--db") == 0)
			slot = &a->opt_db;
		else if (strcmp(arg, "--master-key-file") == 0)
			slot = &a->opt_key;
		if (slot) {
			if (i + 1 >= argc)
				return admin_err(EXIT_USAGE, "serve: option %s needs a value", arg);
			*slot = argv[++i];
			continue;
		}
		if (strncmp(arg, "--", 2) != 0 || arg[2] == 0)
			return admin_err(EXIT_USAGE, "serve: unexpected argument '%.60s'; see '%s serve --help'", arg,
					 ADMIN_PROG);
		/* pass through: --flag=value, --flag value, or a lone --flag */
		if (nextra + 2 > SERVE_MAX_ARGS)
			return admin_err(EXIT_USAGE, "serve: too many options");
		extra[nextra++] = argv[i];
		if (!strchr(arg, '=') && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
			extra[nextra++] = argv[++i];
	}
	if ((rc = check_listen(listen)))
		return rc;
	if (max_conns) {
		int64_t n;
		if ((rc = parse_limit("max-conns", max_conns, 0, &n)))
			return rc;
	}
	if (user && !*user)
		return admin_err(EXIT_USAGE, "serve: --user must not be empty");

	/* create and migrate what is missing, check the key, then let go:
	 * children open the store themselves */
	if ((rc = admin_open(a)))
		return rc;
	admin_close(a);

	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return admin_err(EXIT_RUNTIME, "cannot find my own executable: %s", strerror(errno));
	exe[n] = 0;
	snprintf(dir, sizeof dir, "%s", exe);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	snprintf(proxyd, sizeof proxyd, "%s/proxyd", dir);
	snprintf(limiterd, sizeof limiterd, "%s/limiterd", dir);
	if (access(proxyd, X_OK) < 0)
		return admin_err(EXIT_RUNTIME, "proxyd not found next to %s (looked for %s)", exe, proxyd);

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	sa.sa_handler = forward;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int have_limiter = access(limiterd, X_OK) == 0;
	if (have_limiter) {
		struct sockaddr_un sun;
		snprintf(rundir, sizeof rundir, "%s/run", a->paths.home);
		snprintf(sock, sizeof sock, "%s/limiterd.sock", rundir);
		snprintf(ep, sizeof ep, "ipc://%s", sock);
		if (strlen(sock) >= sizeof sun.sun_path)
			return admin_err(EXIT_RUNTIME, "socket path %s is too long for a unix socket; use a shorter --home",
					 sock);
		/* 0711: a proxyd dropped to --user may reach the socket by name
		 * but cannot list or change the directory; the same for the
		 * home itself (the key stays 0600, the store 0600) */
		if (user && chmod(a->paths.home, 0711) < 0)
			return admin_err(EXIT_RUNTIME, "cannot open %s to --user: %s", a->paths.home,
					 strerror(errno));
		if (paths_mkdirs(rundir, 0700) < 0 || chmod(rundir, 0711) < 0)
			return admin_err(EXIT_RUNTIME, "cannot create %s: %s", rundir, strerror(errno));
		if (start_limiterd(limiterd, ep, sock, a->paths.db, user) < 0)
			return EXIT_RUNTIME;
		setenv("LLMPROXY_LIMITER", ep, 1);
	}
	/* the Google adapter's shared, encrypted token cache (one exchange
	 * per service account, not one per connection process) */
	snprintf(tokdir, sizeof tokdir, "%s/run/tokens", a->paths.home);
	if (paths_mkdirs(tokdir, 0700) == 0) {
		if (user) {
			uid_t uid;
			gid_t gid;
			struct passwd *pw = getpwnam(user);
			if (pw) {
				uid = pw->pw_uid;
				gid = pw->pw_gid;
				if (chown(tokdir, uid, gid) < 0)
					fprintf(stderr, ADMIN_PROG ": warning: cannot hand %s to %s: %s\n", tokdir,
						user, strerror(errno));
			}
		}
		setenv("LLMPROXY_TOKEN_CACHE_DIR", tokdir, 1);
	}

	char *pargv[SERVE_MAX_ARGS + 16];
	int k = 0;
	pargv[k++] = "proxyd";
	pargv[k++] = "--listen";
	pargv[k++] = (char *)listen;
	pargv[k++] = "--db";
	pargv[k++] = a->paths.db;
	pargv[k++] = "--master-key-file";
	pargv[k++] = a->paths.master_key;
	if (have_limiter) {
		pargv[k++] = "--limiter";
		pargv[k++] = ep;
	}
	if (user) {
		pargv[k++] = "--user";
		pargv[k++] = (char *)user;
	}
	if (max_conns) {
		pargv[k++] = "--max-conns";
		pargv[k++] = (char *)max_conns;
	}
	for (int i = 0; i < nextra; i++)
		pargv[k++] = extra[i];
	pargv[k] = NULL;

	pid_t pp = spawn(proxyd, pargv, 0);
	if (pp < 0) {
		if (g_limiterd > 0)
			stop_child((pid_t)g_limiterd);
		return admin_err(EXIT_RUNTIME, "cannot fork: %s", strerror(errno));
	}
	g_proxyd = pp;
	fprintf(stderr, "llmproxy: serving on http://%s\n", listen);

	int backoff = SERVE_RESTART_MIN_MS;
	int64_t last_restart = 0;
	for (;;) {
		int status = 0;
		pid_t r = waitpid(-1, &status, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return admin_err(EXIT_RUNTIME, "waitpid: %s", strerror(errno));
		}
		if (r == pp) {
			g_proxyd = 0;
			if (g_limiterd > 0) {
				pid_t lp = (pid_t)g_limiterd;
				stop_child(lp);
				g_limiterd = 0;
			}
			return exit_code(status);
		}
		if (r == (pid_t)g_limiterd) {
			g_limiterd = 0;
			if (g_stopping)
				continue; /* we asked it to stop; wait for proxyd */
			/* proxyds fail closed (503) meanwhile and reconnect by
			 * themselves once it is back */
			admin_err(0, "limiterd exited (status %d); restarting it", exit_code(status));
			if (mono_ms() - last_restart > SERVE_RESTART_RESET_MS)
				backoff = SERVE_RESTART_MIN_MS;
			sleep_ms(backoff);
			last_restart = mono_ms();
			backoff = backoff * 2 > SERVE_RESTART_MAX_MS ? SERVE_RESTART_MAX_MS : backoff * 2;
			if (!g_stopping)
				start_limiterd(limiterd, ep, sock, a->paths.db, user);
		}
	}
}

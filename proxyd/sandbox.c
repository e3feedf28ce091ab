/* sandbox.c - see sandbox.h.
 *
 * The list below is what a connection process really does after it dropped
 * its privileges: HTTP on the client socket, libcurl + OpenSSL to the
 * provider (with curl's threaded resolver: a thread, a socketpair, glibc's
 * getaddrinfo with its UDP and rtnetlink sockets), ZeroMQ to limiterd (an
 * I/O thread, eventfd, epoll, an AF_UNIX socket), SQLite reading the store
 * in WAL mode (open, fcntl locks, pread, mmap of the -shm file), the
 * Google adapter's shared token cache (mkdir once, open, flock, write),
 * malloc, signals and the clock.
 *
 * Not allowed, so that a compromised process cannot leave its box: execve
 * and execveat, fork/vfork and clone without CLONE_THREAD, ptrace, the setuid
 * and capability family, mount, chroot, pivot_root, unshare, setns, bpf,
 * perf_event_open, kexec, module loading, keyctl, io_uring, userfaultfd,
 * process_vm_*, personality, writable+executable mappings and
 * mprotect(PROT_EXEC).  Any of them kills the process (SIGSYS). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <termios.h>
#include <unistd.h>

#include <seccomp.h>

/* Sanitizer builds (make test) run the ASan/LSan/UBSan runtime inside the
 * process: it walks /proc/self/maps, may fork a symbolizer (whose execve
 * still dies), and LeakSanitizer stops the world at exit with a ptrace-ing
 * clone.  Those builds get a wider list; release builds never do. */
#if defined(__SANITIZE_ADDRESS__)
#define SECCOMP_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECCOMP_SANITIZER 1
#endif
#endif
#ifndef SECCOMP_SANITIZER
#define SECCOMP_SANITIZER 0
#endif

#ifndef CLONE_THREAD
#define CLONE_THREAD 0x00010000
#endif

/* Allowed with any arguments. */
static const int allow_any[] = {
	/* I/O on descriptors */
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
	SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
	SCMP_SYS(lseek), SCMP_SYS(close), SCMP_SYS(close_range),
	SCMP_SYS(dup), SCMP_SYS(dup2), SCMP_SYS(dup3), SCMP_SYS(fcntl),
	SCMP_SYS(pipe), SCMP_SYS(pipe2), SCMP_SYS(eventfd2), SCMP_SYS(socketpair),
	SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(ftruncate), SCMP_SYS(flock),
	SCMP_SYS(fchown), SCMP_SYS(fchmod), /* SQLite on its -shm when run as root */
	/* waiting */
	SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(select), SCMP_SYS(pselect6),
	SCMP_SYS(epoll_create), SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl),
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_pwait2),
	/* sockets (socket() itself is filtered by family below) */
	SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(shutdown),
	SCMP_SYS(getsockopt), SCMP_SYS(setsockopt),
	SCMP_SYS(getsockname), SCMP_SYS(getpeername),
	SCMP_SYS(sendto), SCMP_SYS(sendmsg), SCMP_SYS(sendmmsg),
	SCMP_SYS(recvfrom), SCMP_SYS(recvmsg), SCMP_SYS(recvmmsg),
	/* a pre-forked connection process accepts its one connection under
	 * the filter and then closes the listening socket; listen() stays
	 * forbidden, so no second connection can ever be taken */
	SCMP_SYS(accept4),
	/* files: the store, its -wal/-shm, CA certificates, /etc/hosts,
	 * resolv.conf, localtime */
	SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(stat), SCMP_SYS(fstat),
	SCMP_SYS(lstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fstatfs),
	SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(faccessat2),
	SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(getcwd),
	SCMP_SYS(getdents64), SCMP_SYS(unlink), SCMP_SYS(unlinkat),
	SCMP_SYS(mkdir), SCMP_SYS(mkdirat), /* the Google token cache's directory */
	/* memory (mmap and mprotect are filtered by protection below) */
	SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(madvise),
	/* threads and synchronisation */
	SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(rseq),
	SCMP_SYS(set_tid_address), SCMP_SYS(sched_yield),
	SCMP_SYS(sched_getaffinity), SCMP_SYS(sched_getparam),
	SCMP_SYS(sched_getscheduler), SCMP_SYS(getcpu),
	SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(restart_syscall),
	/* signals */
	SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigtimedwait), SCMP_SYS(sigaltstack),
	/* clocks and randomness */
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday), SCMP_SYS(time),
	SCMP_SYS(getrandom),
	/* identity and system facts (read-only) */
	SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getppid),
	SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
	SCMP_SYS(getresuid), SCMP_SYS(getresgid), SCMP_SYS(getgroups),
	SCMP_SYS(uname), SCMP_SYS(sysinfo), SCMP_SYS(getrusage),
	SCMP_SYS(getrlimit),
};

#if SECCOMP_SANITIZER
/* What the sanitizer runtime adds (reports, symbolizer, LeakSanitizer). */
static const int allow_sanitizer[] = {
	SCMP_SYS(clone), SCMP_SYS(ptrace), SCMP_SYS(wait4), SCMP_SYS(waitid),
	SCMP_SYS(prctl), SCMP_SYS(kill), SCMP_SYS(tgkill), SCMP_SYS(mincore),
	SCMP_SYS(msync), SCMP_SYS(prlimit64), SCMP_SYS(setrlimit),
	SCMP_SYS(process_vm_readv), SCMP_SYS(getdents),
};
#endif

/* ioctl requests: isatty() (TCGETS), FIONREAD/FIONBIO, close-on-exec. */
static const unsigned long allow_ioctl[] = {
	TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX,
};

#if !SECCOMP_SANITIZER
/* prctl operations: thread names (ZeroMQ, glibc), reading our own state. */
static const int allow_prctl[] = {
	PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE, PR_GET_NO_NEW_PRIVS,
	PR_GET_SECCOMP, PR_GET_TIMERSLACK,
#ifdef PR_SET_VMA
	PR_SET_VMA, /* glibc >= 2.38 names its mappings */
#endif
};
#endif

/* Adds one rule; on failure fills err and returns -1. */
static int rule(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned n,
		const struct scmp_arg_cmp *cmp, char *err, size_t errlen)
{
	int r = seccomp_rule_add_array(ctx, action, nr, n, cmp);
	if (r < 0) {
		char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
		snprintf(err, errlen, "seccomp: rule for %s: %s", name ? name : "?", strerror(-r));
		free(name);
		return -1;
	}
	return 0;
}

/* Argument comparisons, spelled out (libseccomp's SCMP_A0() macros leave
 * datum_b to -Wmissing-field-initializers). */
static struct scmp_arg_cmp arg_eq(unsigned arg, scmp_datum_t v)
{
	return (struct scmp_arg_cmp){.arg = arg, .op = SCMP_CMP_EQ, .datum_a = v, .datum_b = 0};
}

static struct scmp_arg_cmp arg_masked(unsigned arg, scmp_datum_t mask, scmp_datum_t v)
{
	return (struct scmp_arg_cmp){.arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = v};
}

#define RULE0(nr) rule(ctx, SCMP_ACT_ALLOW, (nr), 0, NULL, err, errlen)
#define RULE1(nr, c0) \
	rule(ctx, SCMP_ACT_ALLOW, (nr), 1, (const struct scmp_arg_cmp[]){c0}, err, errlen)
#define RULE2(nr, c0, c1) \
	rule(ctx, SCMP_ACT_ALLOW, (nr), 2, (const struct scmp_arg_cmp[]){c0, c1}, err, errlen)

/* The rules that look at arguments. */
static int add_arg_rules(scmp_filter_ctx ctx, char *err, size_t errlen)
{
	/* New mappings are never writable and executable at once; executable
	 * ones only from a file (the dynamic loader, e.g. an NSS module that
	 * getaddrinfo loads late).  Existing pages never become executable. */
	if (RULE1(SCMP_SYS(mmap), arg_masked(2, PROT_EXEC, 0)) < 0 ||
	    RULE2(SCMP_SYS(mmap), arg_masked(2, PROT_WRITE | PROT_EXEC, PROT_EXEC),
		  arg_masked(3, MAP_ANONYMOUS, 0)) < 0 ||
	    RULE1(SCMP_SYS(mprotect), arg_masked(2, PROT_EXEC, 0)) < 0)
		return -1;

	/* Sockets: TCP/UDP to providers and DNS, AF_UNIX to limiterd (and
	 * nscd), and the one rtnetlink query getaddrinfo(AI_ADDRCONFIG) makes. */
	static const int families[] = {AF_UNIX, AF_INET, AF_INET6};
	for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
		if (RULE1(SCMP_SYS(socket), arg_eq(0, (scmp_datum_t)families[i])) < 0)
			return -1;
	if (RULE2(SCMP_SYS(socket), arg_eq(0, AF_NETLINK),
		  arg_eq(2, NETLINK_ROUTE)) < 0)
		return -1;

	/* ioctl's request is an int in the kernel: compare the low 32 bits. */
	for (size_t i = 0; i < sizeof allow_ioctl / sizeof allow_ioctl[0]; i++)
		if (RULE1(SCMP_SYS(ioctl), arg_masked(1, 0xffffffffUL, allow_ioctl[i])) < 0)
			return -1;

	/* ZeroMQ's I/O thread re-applies its own (unchanged) policy with
	 * pthread_setschedparam and aborts if that fails: allow the
	 * non-realtime policies only. */
	static const int policies[] = {SCHED_OTHER, SCHED_BATCH, SCHED_IDLE};
	for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++)
		if (RULE1(SCMP_SYS(sched_setscheduler), arg_eq(1, (scmp_datum_t)policies[i])) < 0)
			return -1;

	/* clone3 passes its flags in memory, where a filter cannot look:
	 * answer ENOSYS so glibc falls back to clone(), whose flags we see. */
	if (rule(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, NULL, err, errlen) < 0)
		return -1;

#if !SECCOMP_SANITIZER
	/* Threads only (curl's resolver, ZeroMQ's I/O thread): no fork. */
	if (RULE1(SCMP_SYS(clone), arg_masked(0, CLONE_THREAD, CLONE_THREAD)) < 0)
		return -1;
	for (size_t i = 0; i < sizeof allow_prctl / sizeof allow_prctl[0]; i++)
		if (RULE1(SCMP_SYS(prctl), arg_eq(0, (scmp_datum_t)allow_prctl[i])) < 0)
			return -1;
	/* Signals to ourselves only (raise, abort, pthread_kill). */
	scmp_datum_t self = (scmp_datum_t)getpid();
	if (RULE1(SCMP_SYS(kill), arg_eq(0, self)) < 0 ||
	    RULE1(SCMP_SYS(tgkill), arg_eq(0, self)) < 0)
		return -1;
	/* getrlimit through prlimit64(0, res, NULL, old): reading only. */
	if (RULE1(SCMP_SYS(prlimit64), arg_eq(2, 0)) < 0)
		return -1;
#endif
	return 0;
}

int sandbox_install(char *err, size_t errlen)
{
	int ret = -1, r;
	scmp_filter_ctx ctx = NULL;

	/* KILL_PROCESS (Linux 4.14): killing only the offending thread could
	 * leave the process half alive; refuse to run without it. */
	if (seccomp_api_get() < 3) {
		snprintf(err, errlen, "seccomp: kernel or libseccomp lacks SECCOMP_RET_KILL_PROCESS");
		goto out;
	}
	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx) {
		snprintf(err, errlen, "seccomp: cannot create the filter");
		goto out;
	}
	/* Foreign-ABI syscalls (i386 int 0x80, x32) die too. */
	if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0 ||
	    (r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1)) < 0 ||
	    (r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0) {
		snprintf(err, errlen, "seccomp: filter attributes: %s", strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < sizeof allow_any / sizeof allow_any[0]; i++)
		if (RULE0(allow_any[i]) < 0)
			goto out;
#if SECCOMP_SANITIZER
	for (size_t i = 0; i < sizeof allow_sanitizer / sizeof allow_sanitizer[0]; i++)
		if (RULE0(allow_sanitizer[i]) < 0)
			goto out;
#endif
	if (add_arg_rules(ctx, err, errlen) < 0)
		goto out;
	if ((r = seccomp_load(ctx)) < 0) {
		snprintf(err, errlen, "seccomp: loading the filter: %s", strerror(-r));
		goto out;
	}
	ret = 0;
out:
	if (ctx)
		seccomp_release(ctx);
	return ret;
}

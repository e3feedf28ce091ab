/* sandbox.h - the syscall allow-list a connection process runs under.
 *
 * Installed once per connection process, after the store is open, the
 * privileges are dropped and harden_process() ran, and before the first
 * client byte is read.  Anything outside the list kills the whole process
 * (SCMP_ACT_KILL_PROCESS): one connection is lost, nothing else. */
#ifndef LLMPROXY_SANDBOX_H
#define LLMPROXY_SANDBOX_H

#include <stddef.h>

/* Loads the filter into this process (all threads, TSYNC).  Irreversible.
 * 0 ok; -1 with a one-line reason in err (the filter is then not active). */
int sandbox_install(char *err, size_t errlen);

#endif

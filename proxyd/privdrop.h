/* privdrop.h - giving up root for good, and the process hardening every
 * proxyd applies before it reads a client byte. */
#ifndef LLMPROXY_PRIVDROP_H
#define LLMPROXY_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

/* Looks user up (name or numeric uid).  0 ok, -1 unknown. */
int privdrop_lookup(const char *user, uid_t *uid, gid_t *gid);
/* setgroups, setresgid, setresuid to uid/gid, then verifies that neither
 * the old ids nor root can be regained.  0 ok, -1 with err filled. */
int privdrop_to(uid_t uid, gid_t gid, char *err, size_t errlen);
/* No core dumps, not ptrace-able, no new privileges via exec. */
void harden_process(void);

#endif

/* handler.h - serves one client connection: the request path of
 * DESIGN.md §4 (auth, routing, limiter, adapter, upstream, settle, log). */
#ifndef LLMPROXY_HANDLER_H
#define LLMPROXY_HANDLER_H

#include <signal.h>

#include "config.h"

/* Serves HTTP requests read from rfd and answered on wfd until the client
 * closes, the keep-alive limits end the connection or *stop becomes
 * non-zero between requests.  st is the store, opened read-only by the
 * caller before privileges were dropped; lim (may be NULL) the caller's
 * limiter, which it closes.  Returns 0. */
struct store;
struct limiter;
/* 1 while a request is being served (a SIGTERM then waits for it). */
extern volatile sig_atomic_t handler_busy;
int handler_serve(const struct proxyd_config *cfg, struct store *st, struct limiter *lim, int rfd,
		  int wfd, volatile sig_atomic_t *stop);

#endif

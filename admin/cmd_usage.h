/* cmd_usage.h - `llmproxy-admin usage`: requests and tokens per key and alias. */
#ifndef LLMPROXY_CMD_USAGE_H
#define LLMPROXY_CMD_USAGE_H

struct store;

/* argv[0] is "usage".  Returns the process exit status. */
int cmd_usage(struct store *st, int argc, char **argv);

#endif

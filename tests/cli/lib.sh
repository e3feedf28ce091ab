# lib.sh - helpers for the black-box CLI tests (source it).
# Counters, ok/fail, and a runner that captures stdout, stderr and status.
# Executed directly it is a no-op test file.

PASS=0
FAIL=0

ok() { PASS=$((PASS + 1)); }
fail() {
	FAIL=$((FAIL + 1))
	printf 'FAIL: %s\n' "$*"
}
# check DESC CMD...: passes when CMD succeeds.
check() {
	local desc=$1
	shift
	if "$@"; then ok; else fail "$desc"; fi
}
summary() {
	printf '%d passed, %d failed\n' "$PASS" "$FAIL"
	[ "$FAIL" -eq 0 ]
}

# run CMD...: sets OUT, ERR and RC.  run_in INPUT CMD...: same with stdin.
run() {
	OUT=$("$@" 2>"$LIB_TMP/stderr")
	RC=$?
	ERR=$(cat "$LIB_TMP/stderr")
}
run_in() {
	local input=$1
	shift
	OUT=$(printf '%s' "$input" | "$@" 2>"$LIB_TMP/stderr")
	RC=$?
	ERR=$(cat "$LIB_TMP/stderr")
}

# Where the binaries are: $LLMPROXY_BIN (a directory), default bin.
lib_bin_dir() {
	local d=${LLMPROXY_BIN:-bin}
	case $d in /*) ;; *) d=$PWD/$d ;; esac
	printf '%s' "$d"
}

LIB_TMP=${LIB_TMP:-$(mktemp -d /tmp/llmproxy-cli.XXXXXX)}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "0 passed, 0 failed"
	rm -rf "$LIB_TMP"
fi

#!/usr/bin/env bash
# test_systemd.sh - the systemd units in systemd/: `systemd-analyze verify`
# passes with no warning on each, the directives the deployment depends on
# are present, the sysusers/tmpfiles snippets apply to a scratch root, and
# `systemd-analyze security --offline=yes` rates llmproxy@.service below 2.0.
#
# verify needs the ExecStart binaries to exist, so the units are checked in
# a temp copy whose /usr/local/bin/ points at $LLMPROXY_BIN (else bin/).
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); }
fail() { FAIL=$((FAIL + 1)); printf 'FAIL: %s\n' "$*"; }
check() { local d=$1; shift; if "$@"; then ok; else fail "$d"; fi; }

SCORE_MAX=2.0
UNITS="llmproxy.socket llmproxy@.service llmproxy-limiterd.service"
tmp=$(mktemp -d /tmp/test_systemd.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

if ! command -v systemd-analyze >/dev/null; then
	echo "systemd-analyze not installed (Debian package systemd)"
	fail "systemd-analyze missing"
	printf '%d passed, %d failed\n' "$PASS" "$FAIL"
	exit 1
fi

bindir=${LLMPROXY_BIN:-bin}
case $bindir in /*) ;; *) bindir=$PWD/$bindir ;; esac
if [ ! -x "$bindir/proxyd" ] || [ ! -x "$bindir/limiterd" ]; then
	echo "note: no proxyd/limiterd in $bindir; verifying against stand-in executables"
	bindir=$tmp/bin
	mkdir -p "$bindir"
	for b in proxyd limiterd; do printf '#!/bin/sh\nexit 0\n' >"$bindir/$b"; chmod +x "$bindir/$b"; done
fi
mkdir -p "$tmp/units"
for u in $UNITS; do
	check "systemd/$u exists" test -f "systemd/$u"
	sed "s#/usr/local/bin/#$bindir/#g" "systemd/$u" >"$tmp/units/$u"
done

# verify_clean FILE: verify exits 0 and prints nothing (an unknown key or a
# bad value is only a warning on stderr, with exit status 0).
verify_clean() {
	local out rc
	out=$(cd "$(dirname "$1")" && systemd-analyze verify --man=no --generators=no "./$(basename "$1")" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || [ -n "$out" ]; then
		printf '  verify %s (exit %d):\n%s\n' "$(basename "$1")" $rc "$out" | head -n 20
		return 1
	fi
}

# --- verify ---------------------------------------------------------------
for u in $UNITS; do
	check "systemd-analyze verify $u" verify_clean "$tmp/units/$u"
done
# all together (cross-unit references: the socket's service, Wants=)
check "verify all units together" bash -c "cd '$tmp/units' && out=\$(systemd-analyze verify --man=no --generators=no ./llmproxy.socket ./llmproxy@.service ./llmproxy-limiterd.service 2>&1) && [ -z \"\$out\" ]"

# the check itself can fail: a misspelt key and a missing binary are caught
cp "$tmp/units/llmproxy@.service" "$tmp/units/broken@.service"
sed -i 's/^NoNewPrivileges=yes/NoNewPrivilege=yes/' "$tmp/units/broken@.service"
check "verify catches a misspelt key" bash -c "cd '$tmp/units' && systemd-analyze verify --man=no --generators=no ./broken@.service 2>&1 | grep -q 'Unknown key'"
sed "s#$bindir/proxyd#$tmp/nonexistent/proxyd#" "$tmp/units/llmproxy@.service" >"$tmp/units/nobin@.service"
check "verify catches a missing ExecStart binary" bash -c "cd '$tmp/units' && ! systemd-analyze verify --man=no --generators=no ./nobin@.service >/dev/null 2>&1"
rm -f "$tmp/units/broken@.service" "$tmp/units/nobin@.service"

# --- what the deployment depends on ---------------------------------------
# has FILE DIRECTIVE=VALUE-REGEX: an uncommented line matches.
has() { grep -Eq "^$2\$" "systemd/$1" || { echo "  systemd/$1 lacks $2"; return 1; }; }
S=llmproxy.socket P=llmproxy@.service L=llmproxy-limiterd.service
for d in 'ListenStream=8132' 'Accept=yes' 'MaxConnections=[0-9]+' 'TriggerLimitIntervalSec=[0-9]+m?s?' \
	'TriggerLimitBurst=[0-9]+'; do
	check "$S: $d" has $S "$d"
done
check "$S documents how to change the port" grep -q 'systemctl edit llmproxy.socket' "systemd/$S"
burst=$(sed -nE 's/^TriggerLimitBurst=([0-9]+)$/\1/p' "systemd/$S")
check "$S: TriggerLimitBurst above the default 200 (got ${burst:-none})" test "${burst:-0}" -gt 200

for d in 'ExecStart=/usr/local/bin/proxyd .*--home /var/lib/llmproxy.*' 'StandardInput=socket' \
	'StandardOutput=socket' 'StandardError=journal' 'User=llmproxy' 'DynamicUser=no' \
	'LoadCredential=master-key:/etc/llmproxy/master.key' 'ReadOnlyPaths=/var/lib/llmproxy' \
	'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'PrivateDevices=yes' \
	'ProtectKernelTunables=yes' 'ProtectKernelModules=yes' 'ProtectKernelLogs=yes' 'ProtectControlGroups=yes' \
	'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'RestrictNamespaces=yes' 'LockPersonality=yes' \
	'MemoryDenyWriteExecute=yes' 'SystemCallArchitectures=native' 'SystemCallFilter=@system-service' \
	'SystemCallFilter=~.*@privileged.*' 'UMask=0077' 'CapabilityBoundingSet=' 'LimitNOFILE=[0-9]+' \
	'MemoryMax=[0-9]+[KMG]?' 'TasksMax=[0-9]+' 'RuntimeMaxSec=[0-9]+[a-z]*'; do
	check "$P: $d" has $P "$d"
done
# the store is not writable for proxyd, and no secret lives in the unit
check "$P: no ReadWritePaths" bash -c "! grep -Eq '^ReadWritePaths=' systemd/$P"
check "$P: Environment= holds no secret (LoadCredential= does)" bash -c "! grep -E '^(Environment|EnvironmentFile)=' systemd/$P | grep -Eiv '^Environment=LLMPROXY_TOKEN_CACHE_DIR=[^ ]+$' | grep -q ."
check "$P: no key material on ExecStart" bash -c "! grep -Eiq '^ExecStart=.*(key|secret|token)' systemd/$P"
# sched_setscheduler must stay allowed: ZeroMQ's I/O thread aborts without it
for u in $P $L; do
	check "$u: sched_setscheduler not filtered" bash -c "! grep -E '^SystemCallFilter=~' systemd/$u | grep -Eq 'sched_setscheduler|@resources'"
done

for d in 'ExecStart=/usr/local/bin/limiterd .*--socket ipc:///run/llmproxy/limiterd.sock.*' 'User=llmproxy' \
	'RuntimeDirectory=llmproxy' 'RuntimeDirectoryMode=0750' 'ReadWritePaths=/var/lib/llmproxy' 'UMask=0077' \
	'NoNewPrivileges=yes' 'ProtectSystem=strict' 'PrivateDevices=yes' 'MemoryDenyWriteExecute=yes' \
	'SystemCallFilter=@system-service'; do
	check "$L: $d" has $L "$d"
done
# both ends name the same endpoint
ep_p=$(grep -E '^ExecStart=' "systemd/$P" | grep -oE 'ipc://[^ ]+')
ep_l=$(grep -E '^ExecStart=' "systemd/$L" | grep -oE 'ipc://[^ ]+')
check "proxyd and limiterd use the same endpoint ($ep_p / $ep_l)" test -n "$ep_p" -a "$ep_p" = "$ep_l"

# --- sysusers / tmpfiles on a scratch root --------------------------------
if [ "$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
	root=$tmp/root
	mkdir -p "$root/etc"
	check "sysusers creates llmproxy" bash -c "systemd-sysusers --root='$root' '$PWD/systemd/llmproxy.sysusers.conf' >/dev/null 2>&1 && grep -q '^llmproxy:' '$root/etc/passwd' && grep -q '^llmproxy:' '$root/etc/group'"
	check "tmpfiles creates the directories" systemd-tmpfiles --root="$root" --create "$PWD/systemd/llmproxy.tmpfiles.conf"
	uid=$(awk -F: '$1=="llmproxy"{print $3}' "$root/etc/passwd")
	check "/var/lib/llmproxy is llmproxy's, 0750" test "$(stat -c '%u %a' "$root/var/lib/llmproxy" 2>/dev/null)" = "$uid 750"
	check "/etc/llmproxy is root's, 0700" test "$(stat -c '%u %a' "$root/etc/llmproxy" 2>/dev/null)" = "0 700"
else
	echo "note: not root or systemd-sysusers/systemd-tmpfiles missing: snippets not applied"
fi

# --- security exposure ----------------------------------------------------
if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
	for u in llmproxy@.service llmproxy-limiterd.service; do
		out=$(cd "$tmp/units" && systemd-analyze security --offline=yes --no-pager "./$u" 2>&1)
		score=$(printf '%s\n' "$out" | sed -nE 's/.*Overall exposure level for [^:]*: ([0-9.]+) .*/\1/p' | tail -n 1)
		echo "  $u exposure: ${score:-?}"
		check "$u exposure ${score:-?} < $SCORE_MAX" awk -v s="${score:-99}" -v m=$SCORE_MAX 'BEGIN{exit !(s+0 < m+0)}'
	done
	# the scoring can fail: the same unit without its sandbox scores high
	grep -vE '^(Protect|Private|Restrict|NoNewPriv|SystemCall|Capability|MemoryDeny|LockPers|UMask|RemoveIPC|KeyringMode|DevicePolicy|ProcSubset|User|Group|DynamicUser)' \
		"$tmp/units/llmproxy@.service" >"$tmp/units/bare@.service"
	out=$(cd "$tmp/units" && systemd-analyze security --offline=yes --no-pager ./bare@.service 2>&1)
	score=$(printf '%s\n' "$out" | sed -nE 's/.*Overall exposure level for [^:]*: ([0-9.]+) .*/\1/p' | tail -n 1)
	check "an unhardened copy scores >= $SCORE_MAX (got ${score:-?})" awk -v s="${score:-0}" -v m=$SCORE_MAX 'BEGIN{exit !(s+0 >= m+0)}'
else
	echo "note: systemd-analyze security --offline unsupported here; score not checked"
fi

printf '%d passed, %d failed\n' "$PASS" "$FAIL"
[ "$FAIL" -eq 0 ]

// deploy.test.mjs - proxyd run the ways it is deployed (issue 6):
//
//  (a) exactly as systemd runs it, with systemd-socket-activate: `--accept
//      --inetd` (StandardInput=socket: the connection is fd 0/1) and
//      `--accept` (LISTEN_FDS=1: the connection is fd 3); plain and streamed
//      requests through the official OpenAI client; logs on stderr, nothing
//      but HTTP on the connection and nothing at all on stdout;
//  (b) as root, `serve --user nobody`: each connection process has all of its
//      uids and gids = nobody's while a request is in flight, cannot read the
//      master key file, and the request still succeeds;
//  (c) seccomp: connection processes run with the filter (Seccomp: 2,
//      NoNewPrivs: 1), and a connection process that makes a forbidden
//      syscall (execve, injected with an LD_PRELOAD shim at the point where
//      proxyd talks to the upstream) dies of SIGSYS alone: the next
//      connection is served normally.  Control: with --no-seccomp the same
//      execve is not killed by SIGSYS;
//  (d) `serve --accept-mode exec` (a fresh exec per connection, as systemd
//      does) serves plain and streamed requests.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as L from './lib.mjs';

const CRED = 'sk-upstream-deploy-7f6e5d4c3b2a1908f7e6d5c4';
const VK = 'vk-it-deploy-0a1b2c3d4e5f60718293a4b5c6d7';
const SIGSYS = 31;
const DELAY = '__fake:delay_first_byte_ms=1500';

let fake, home, limiterEp;
const mine = []; // processes started here (not through lib.mjs)

after(async () => {
	for (const p of mine) {
		try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ }
	}
	await L.sleep(300);
	for (const p of mine) {
		try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
	}
	await L.stopAll();
});

/* The environment for our own children: no state location from outside,
 * sanitizer settings kept. */
function cleanEnv(extra = {}) {
	const env = { ...process.env };
	for (const k of ['LLMPROXY_HOME', 'LLMPROXY_DB', 'LLMPROXY_MASTER_KEY_FILE', 'CREDENTIALS_DIRECTORY', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'LLMPROXY_LIMITER']) delete env[k];
	return { ...env, ...extra };
}

/* Spawns a process in its own group, unref'd, capturing stdout/stderr. */
function start(cmd, args, env) {
	const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
	const p = { pid: child.pid, child, out: '', err: '', exited: false };
	child.stdout.setEncoding('utf8');
	child.stderr.setEncoding('utf8');
	child.stdout.on('data', (d) => { p.out += d; });
	child.stderr.on('data', (d) => { p.err += d; });
	child.on('exit', () => { p.exited = true; });
	child.on('error', (e) => { p.err += `spawn error: ${e.message}\n`; p.exited = true; });
	child.unref();
	for (const s of [child.stdout, child.stderr]) s.unref();
	mine.push(p);
	return p;
}

async function stop(p) {
	if (p.exited) return;
	try { process.kill(-p.pid, 'SIGTERM'); } catch { return; }
	await L.waitUntil(() => p.exited, 3000);
	if (!p.exited) try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
}

/* /proc/PID/status as {Name, PPid, Uid: [r,e,s,fs], ...}; null when gone. */
function procStatus(pid) {
	let text;
	try { text = fs.readFileSync(`/proc/${pid}/status`, 'utf8'); } catch { return null; }
	const o = {};
	for (const line of text.split('\n')) {
		const i = line.indexOf(':');
		if (i > 0) o[line.slice(0, i)] = line.slice(i + 1).trim();
	}
	for (const k of ['Uid', 'Gid']) if (o[k]) o[k] = o[k].split(/\s+/).map(Number);
	if (o.PPid) o.PPid = Number(o.PPid);
	return o;
}

function cmdline(pid) {
	try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean); } catch { return []; }
}

/* Live processes whose parent is ppid (optionally named name). */
function childrenOf(ppid, name) {
	const out = [];
	for (const d of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(d)) continue;
		const s = procStatus(Number(d));
		if (s && s.PPid === ppid && (!name || s.Name === name) && !/^Z/.test(s.State || '')) out.push({ pid: Number(d), status: s });
	}
	return out;
}

/* All live descendants of pid. */
function descendantsOf(pid) {
	const out = [];
	const queue = [pid];
	while (queue.length) {
		const p = queue.shift();
		for (const c of childrenOf(p)) { out.push(c); queue.push(c.pid); }
	}
	return out;
}

/* Waits for the connection process of a slow request: a descendant of root
 * that pick() accepts.  It waits out the first 400 ms so that the short-
 * lived processes of earlier probes (/healthz) are gone, and returns the
 * process together with a fresh read of its status. */
async function waitConnProc(root, pick, timeoutMs = 5000) {
	await L.sleep(400);
	return L.waitUntil(() => {
		const c = descendantsOf(root).find(pick);
		const status = c && procStatus(c.pid);
		return status ? { pid: c.pid, status } : null;
	}, timeoutMs, 25);
}

/* The sanitizer settings, as -E flags for systemd-socket-activate (which
 * passes only PATH, HOME, TERM and LISTEN_* on its own). */
function saEnvFlags() {
	const f = [];
	for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS']) if (process.env[k]) f.push('-E', k);
	return f;
}

const haveSocketActivate = spawnSync('systemd-socket-activate', ['--version'], { stdio: 'ignore' }).status === 0;

/* Starts proxyd under systemd-socket-activate on a free port; resolves once
 * /healthz answers 200 (each probe is a connection, so a proxyd). */
async function startActivated({ inetd }) {
	for (let attempt = 0; attempt < 3; attempt++) {
		const port = await L.freePort();
		const args = ['--accept', ...(inetd ? ['--inetd'] : []), '-l', `127.0.0.1:${port}`, ...saEnvFlags(),
			L.binPath('proxyd'), '--home', home.dir, '--limiter', limiterEp];
		const p = start('systemd-socket-activate', args, cleanEnv());
		p.port = port;
		const ok = await L.waitUntil(async () => !p.exited && (await L.httpRequest({ port, path: '/healthz', timeoutMs: 3000 }).then((r) => r.status, () => 0)) === 200, 15000, 100);
		if (ok) return p;
		await stop(p);
		if (!/in use/i.test(p.err)) throw new Error(`systemd-socket-activate did not serve /healthz on ${port}; stderr:\n${p.err.slice(-3000)}`);
	}
	throw new Error('no free port for systemd-socket-activate');
}

const chatBody = (text) => L.chatBody('chat', text);

/* A plain and a streamed request through the OpenAI client. */
async function plainAndStreamed(baseURL) {
	const client = await L.openaiClient({ apiKey: VK, baseURL });
	const r = await client.chat.completions.create(chatBody('hello deploy'));
	assert.equal(r.choices[0].message.content, 'Hello from fake openai');
	assert.equal(r.usage.prompt_tokens, 2);
	const s = await L.collectStream(await client.chat.completions.create({ ...chatBody('hello stream'), stream: true }));
	assert.equal(s.content, 'Hello from fake openai');
	assert.ok(s.chunks.length >= 2, `several chunks (got ${s.chunks.length})`);
}

/* One request on a raw connection that the server closes: every byte the
 * connection carried must be exactly one HTTP response. */
async function onlyHttpOnTheWire(port) {
	const c = await L.RawConn.open(port);
	await c.write(L.buildRequest({ path: '/v1/models', headers: L.bearer(VK), keepAlive: false }));
	const { closed } = await c.waitClosed(10000);
	c.destroy();
	assert.ok(closed, 'the server closed the connection after Connection: close');
	const all = c.buf.toString('latin1');
	assert.match(all, /^HTTP\/1\.1 200 /, `the wire starts with the status line: ${JSON.stringify(all.slice(0, 80))}`);
	const r = L.parseResponse(c.buf, { closed: true });
	assert.ok(r, 'a complete response');
	assert.equal(r.consumed, c.buf.length, `nothing but the response on the wire; extra: ${JSON.stringify(all.slice(r.consumed, r.consumed + 200))}`);
	assert.ok(Array.isArray(JSON.parse(r.body).data), '/v1/models lists data');
}

before(async () => {
	fake = await L.startFake('openai', ['--key', CRED]);
	home = await L.Home.create('llmproxy-dep-');
	const conn = await home.connection({ name: 'd-main', provider: 'openai', endpoint: fake.url, apiKey: CRED });
	const m = await home.model({ conn, name: 'd-chat', remote: 'gpt-4o-mini' });
	const vk = await home.vkey({ name: 'd-key', key: VK });
	await home.assign({ vkey: vk.id, model: m, alias: 'chat' });
	// our own limiterd for the socket-activated proxyds (serve starts its own)
	const rundir = path.join(home.dir, 'sa-run');
	fs.mkdirSync(rundir, { mode: 0o700 });
	const sock = path.join(rundir, 'l.sock');
	limiterEp = `ipc://${sock}`;
	const lim = start(L.binPath('limiterd'), ['--socket', limiterEp, '--db', path.join(home.dir, 'llmproxy.db')], cleanEnv());
	const up = await L.waitUntil(() => fs.existsSync(sock) || lim.exited, 5000);
	assert.ok(up && !lim.exited, `limiterd up; stderr: ${lim.err}`);
}, { timeout: 60000 });

// ---------------------------------------------------------------------------
// (a) systemd-socket-activate

test('socket activation, --accept --inetd (StandardInput=socket): plain + streamed, logs on stderr only', { timeout: 60000, skip: !haveSocketActivate && 'systemd-socket-activate not installed' }, async () => {
	const sa = await startActivated({ inetd: true });
	await plainAndStreamed(`http://127.0.0.1:${sa.port}/v1`);
	await onlyHttpOnTheWire(sa.port);
	// proxyd's request log line reached stderr, and no secret did
	const logged = await L.waitUntil(() => /proxyd\[\d+\]: .*status=200/.test(sa.err), 3000);
	assert.ok(logged, `a proxyd access log line on stderr; got:\n${sa.err.slice(-2000)}`);
	L.assertNoSecret(sa.err, [VK, CRED], 'stderr');
	// with --inetd the children's stdout is the socket: our pipe stays empty
	assert.equal(sa.out, '', 'nothing on systemd-socket-activate\'s stdout');
	await stop(sa);
});

test('socket activation, --accept (LISTEN_FDS=1, fd 3): plain + streamed, stdout untouched', { timeout: 60000, skip: !haveSocketActivate && 'systemd-socket-activate not installed' }, async () => {
	const sa = await startActivated({ inetd: false });
	await plainAndStreamed(`http://127.0.0.1:${sa.port}/v1`);
	await onlyHttpOnTheWire(sa.port);
	const logged = await L.waitUntil(() => /proxyd\[\d+\]: .*status=200/.test(sa.err), 3000);
	assert.ok(logged, `a proxyd access log line on stderr; got:\n${sa.err.slice(-2000)}`);
	// here fd 1 is our pipe: proxyd must not have written a single byte to it
	assert.equal(sa.out, '', `stdout stays empty; got ${JSON.stringify(sa.out.slice(0, 200))}`);
	L.assertNoSecret(sa.err, [VK, CRED], 'stderr');
	await stop(sa);
});

// ---------------------------------------------------------------------------
// (c) seccomp is on in every connection process

test('socket-activated connection processes run under the seccomp filter', { timeout: 30000, skip: !haveSocketActivate && 'systemd-socket-activate not installed' }, async () => {
	const sa = await startActivated({ inetd: true });
	const pending = L.httpRequest({ port: sa.port, method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: chatBody(`slow ${DELAY}`), timeoutMs: 15000 });
	const conn = await waitConnProc(sa.pid, (c) => c.status.Name === 'proxyd');
	assert.ok(conn, 'found the connection process while its request is in flight');
	const st = conn.status;
	assert.equal(st.Seccomp, '2', `Seccomp: 2 (filter mode) in /proc/${conn.pid}/status, got ${st.Seccomp}`);
	assert.equal(st.NoNewPrivs, '1', 'NoNewPrivs: 1');
	const r = await pending;
	assert.equal(r.status, 200, r.text);
	await stop(sa);
});

/* Builds the LD_PRELOAD shim that makes a connection process call execve
 * the first time it drives the upstream transfer after a token file was
 * created.  null (test skipped) without a C compiler. */
function buildShim() {
	const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
	if (!cc) return null;
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmproxy-shim-'));
	const src = path.join(dir, 'shim.c');
	fs.writeFileSync(src, `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
extern char **environ;
typedef int (*perform_fn)(void *, int *);
static perform_fn real_perform;
/* resolved at load time, long before the filter */
__attribute__((constructor)) static void shim_init(void)
{
	real_perform = (perform_fn)dlsym(RTLD_NEXT, "curl_multi_perform");
}
int curl_multi_perform(void *multi, int *running)
{
	const char *token = getenv("LLMPROXY_TEST_EXECVE_TOKEN");
	if (token && unlink(token) == 0) {
		char *argv[] = {"/bin/true", NULL};
		execve("/bin/true", argv, environ); /* forbidden: SIGSYS */
		_exit(97);
	}
	return real_perform(multi, running);
}
`);
	const so = path.join(dir, 'shim.so');
	const r = spawnSync(cc, ['-shared', '-fPIC', '-O1', '-o', so, src, '-ldl'], { encoding: 'utf8' });
	if (r.status !== 0) throw new Error(`building the shim failed: ${r.stderr}`);
	return { dir, so };
}

for (const seccomp of [true, false]) {
	const title = seccomp
		? 'seccomp: a forbidden syscall kills only that connection process (SIGSYS); the next connection is served'
		: 'control, --no-seccomp: the same execve is not a SIGSYS kill';
	test(title, { timeout: 60000 }, async (t) => {
		const shim = buildShim();
		if (!shim) return t.skip('no C compiler for the LD_PRELOAD shim');
		const token = path.join(shim.dir, 'execve-once');
		const asan = [process.env.ASAN_OPTIONS, 'verify_asan_link_order=0'].filter(Boolean).join(':');
		const proxy = await L.startProxy(home, {
			args: seccomp ? [] : ['--no-seccomp'],
			env: { LD_PRELOAD: shim.so, LLMPROXY_TEST_EXECVE_TOKEN: token, ASAN_OPTIONS: asan },
		});
		try {
			// the shim itself does not disturb normal requests
			let r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: chatBody('before') });
			assert.equal(r.status, 200, r.text);

			fs.writeFileSync(token, '');
			let failed = null;
			try {
				r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: chatBody('trigger'), timeoutMs: 10000 });
			} catch (e) {
				failed = e;
			}
			assert.ok(!fs.existsSync(token), 'the shim ran in the connection process (token consumed)');
			assert.ok(failed, `the triggered connection got no answer (got HTTP ${r && r.status})`);
			const killedLine = /connection process \d+ killed by signal 31\b/;
			if (seccomp) {
				const seen = await L.waitUntil(() => killedLine.test(proxy.logs()), 3000);
				assert.ok(seen, `the listener saw its child die of SIGSYS (${SIGSYS}); logs:\n${proxy.logs().slice(-2000)}`);
			} else {
				await L.sleep(300);
				assert.ok(!killedLine.test(proxy.logs()), 'no SIGSYS without the filter');
			}
			// the listener and the next connection are fine
			assert.ok(proxy.running(), 'serve still runs');
			await proxy.assertHealthy('the killed connection');
			r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: chatBody('after') });
			assert.equal(r.status, 200, r.text);
			assert.equal(r.json.choices[0].message.content, 'Hello from fake openai');
		} finally {
			await proxy.stop();
			fs.rmSync(shim.dir, { recursive: true, force: true });
		}
	});
}

// ---------------------------------------------------------------------------
// (b) privilege drop, as root

test('serve --user nobody (root): every id of the connection process is nobody\'s, the key is unreadable to it, requests work', { timeout: 60000 }, async (t) => {
	if (typeof process.getuid !== 'function' || process.getuid() !== 0) return t.skip('needs root');
	const nobody = spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' });
	if (nobody.status !== 0) return t.skip('no user nobody');
	const uid = Number(nobody.stdout.trim());
	const gid = Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim());

	const keyPath = path.join(home.dir, 'master.key');
	const ks = fs.statSync(keyPath);
	assert.equal(ks.uid, 0, 'master key owned by root');
	assert.equal(ks.mode & 0o077, 0, 'master key mode 0600 (no group/other bits)');
	const asNobody = spawnSync('cat', [keyPath], { uid, gid, stdio: ['ignore', 'ignore', 'pipe'] });
	assert.notEqual(asNobody.status, 0, 'nobody cannot read the master key');

	const proxy = await L.startProxy(home, { args: ['--user', 'nobody'] });
	try {
		const pending = proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: chatBody(`slow ${DELAY}`), timeoutMs: 15000 });
		// connection processes are proxyd children of the proxyd listener: the
		// one serving the slow request and the spares prepared for the next
		const isConn = (c) => c.status.Name === 'proxyd' && (procStatus(c.status.PPid) || {}).Name === 'proxyd';
		assert.ok(await waitConnProc(proxy.pid, isConn), 'found connection processes while the request is in flight');
		const seen = new Map();
		for (const c of descendantsOf(proxy.pid)) {
			const status = procStatus(c.pid);
			if (status && isConn({ status })) seen.set(c.pid, status);
		}
		for (const [pid, st] of seen) {
			assert.deepEqual(st.Uid, [uid, uid, uid, uid], `${pid}: real, effective, saved, fs uid = nobody (${st.Uid})`);
			assert.deepEqual(st.Gid, [gid, gid, gid, gid], `${pid}: real, effective, saved, fs gid = nobody (${st.Gid})`);
			assert.equal((st.Groups || '').trim(), String(gid), `${pid}: supplementary groups: only nobody's (${st.Groups})`);
			assert.match(st.CapEff, /^0+$/, `${pid}: no effective capabilities`);
			assert.equal(st.NoNewPrivs, '1', `${pid}: NoNewPrivs: 1`);
			assert.equal(st.Seccomp, '2', `${pid}: Seccomp: 2`);
			// the listener keeps its root (it forks the next connections)
			assert.equal(procStatus(st.PPid).Uid[0], 0, 'the listener itself stays root');
		}
		const r = await pending;
		assert.equal(r.status, 200, r.text);
		assert.equal(r.json.choices[0].message.content, 'Hello from fake openai');
		assert.ok(seen.has(Number(r.headers['x-llmproxy-pid'])), 'the process that served the request was among those inspected');
	} finally {
		await proxy.stop();
	}
});

// ---------------------------------------------------------------------------
// (d) exec per connection without systemd

test('serve --accept-mode exec: a fresh proxyd image per connection serves plain + streamed requests', { timeout: 60000 }, async () => {
	const proxy = await L.startProxy(home, { args: ['--accept-mode', 'exec'] });
	try {
		await plainAndStreamed(proxy.v1URL);
		const pending = proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: chatBody(`slow ${DELAY}`), timeoutMs: 15000 });
		// (its comm is "exe": it was exec'd through /proc/self/exe)
		const conn = await waitConnProc(proxy.pid, (c) => /proxyd$/.test(cmdline(c.pid)[0] || '') && cmdline(c.pid).includes('--inetd'));
		assert.ok(conn, 'the connection process is a re-exec of proxyd (--inetd on its command line)');
		const st = conn.status;
		assert.equal(st.Seccomp, '2', 'the exec\'d image installs the filter too');
		assert.ok(!cmdline(conn.pid).some((a) => a.includes(VK) || a.includes(CRED)), 'no secret in argv');
		const r = await pending;
		assert.equal(r.status, 200, r.text);
	} finally {
		await proxy.stop();
	}
});

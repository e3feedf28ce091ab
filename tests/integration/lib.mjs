// lib.mjs - helpers for the integration tests (node:test, Node 20).
//
// Typical use in a test file:
//
//   import { after, before, test } from 'node:test';
//   import * as L from './lib.mjs';
//   after(L.stopAll);                       // stops every process started here
//   let fake, home, proxy;
//   before(async () => {
//     fake  = await L.startFake('openai', ['--key', 'sk-up-1']);
//     home  = await L.Home.create();
//     const conn  = await home.connection({ name: 'oa', provider: 'openai', endpoint: fake.url, apiKey: 'sk-up-1' });
//     const model = await home.model({ conn, name: 'm1', remote: 'gpt-4o-mini' });
//     const vk    = await home.vkey({ name: 'app', key: 'vk-test-1' });
//     await home.assign({ vkey: vk.id, model, alias: 'chat' });
//     proxy = await L.startProxy(home);
//   });
//
// Binaries: $LLMPROXY_BIN (a directory), else build/asan/bin when it holds
// llmproxy-admin, else bin/.  Every helper that waits has a bound, and every
// process started is unref'd and killed on exit, so a missing binary or a
// dead proxy makes tests fail fast instead of hanging.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Binaries

/* The directory holding the llmproxy binaries. */
export function binDir() {
	if (process.env.LLMPROXY_BIN) return path.resolve(ROOT, process.env.LLMPROXY_BIN);
	const asan = path.join(ROOT, 'build/asan/bin');
	if (fs.existsSync(path.join(asan, 'llmproxy-admin'))) return asan;
	return path.join(ROOT, 'bin');
}

/* Full path of binary `name`; throws a clear error when it is not executable. */
export function binPath(name = 'llmproxy-admin') {
	const p = path.join(binDir(), name);
	try {
		fs.accessSync(p, fs.constants.X_OK);
	} catch {
		throw new Error(`binary not found or not executable: ${p} (build with make, or set LLMPROXY_BIN to the directory holding it)`);
	}
	return p;
}

/* True when the binary exists (for skip logic, if a file wants it). */
export function haveBinary(name = 'llmproxy-admin') {
	try { binPath(name); return true; } catch { return false; }
}

// Environment variables that would point the binaries at a state other than
// the test's temp home.
const SCRUB_ENV = ['LLMPROXY_HOME', 'LLMPROXY_DB', 'LLMPROXY_MASTER_KEY_FILE', 'CREDENTIALS_DIRECTORY', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'];

function childEnv(extra = {}) {
	const env = { ...process.env };
	for (const k of SCRUB_ENV) delete env[k];
	return { ...env, ...extra };
}

// ---------------------------------------------------------------------------
// Process tracking and cleanup

const live = new Set();   // {child, group, name}
const tmpDirs = new Set();

function track(child, name, group) {
	const t = { child, group, name };
	live.add(t);
	child.on('exit', () => { if (!group) live.delete(t); });
	// Never let a child keep the test process alive (no hangs): the exit
	// hook below kills what is left.
	child.unref();
	for (const s of [child.stdin, child.stdout, child.stderr]) if (s && s.unref) s.unref();
	return t;
}

function killQuiet(pid, sig) {
	try { process.kill(pid, sig); return true; } catch { return false; }
}

/* True while any process of group pgid exists. */
export function groupAlive(pgid) {
	try { process.kill(-pgid, 0); return true; } catch (e) { return e.code === 'EPERM'; }
}

/* Stops one started process: SIGTERM, then SIGKILL after graceMs.  For a
 * process-group leader (the proxy), SIGKILL goes to the whole group and any
 * leftover member is killed at the end too.  Resolves when it has exited. */
export async function stopProcess(t, graceMs = 3000) {
	const { child, group } = t;
	if (child.exitCode === null && child.signalCode === null) {
		const exited = new Promise((r) => child.once('exit', r));
		killQuiet(child.pid, 'SIGTERM');
		const timer = sleep(graceMs).then(() => 'timeout');
		if ((await Promise.race([exited, timer])) === 'timeout') {
			if (group) killQuiet(-child.pid, 'SIGKILL');
			killQuiet(child.pid, 'SIGKILL');
			await Promise.race([exited, sleep(2000)]);
		}
	}
	if (group && groupAlive(child.pid)) killQuiet(-child.pid, 'SIGKILL');
	live.delete(t);
}

/* Stops every process started through this module and removes temp homes
 * (kept when LLMPROXY_KEEP_TMP is set).  Use as after(stopAll). */
export async function stopAll() {
	await Promise.all([...live].map((t) => stopProcess(t)));
	if (!process.env.LLMPROXY_KEEP_TMP) {
		for (const d of tmpDirs) await fsp.rm(d, { recursive: true, force: true }).catch(() => {});
		tmpDirs.clear();
	}
}

process.on('exit', () => {
	for (const t of live) {
		if (t.group) killQuiet(-t.child.pid, 'SIGKILL');
		killQuiet(t.child.pid, 'SIGKILL');
	}
});

// ---------------------------------------------------------------------------
// Generic helpers

/* A TCP port on 127.0.0.1 that was free a moment ago (also usable as a
 * "nothing listens here" upstream). */
export function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.unref();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

/* Polls fn() until it returns a truthy value (returned) or timeoutMs passes
 * (returns the last value). */
export async function waitUntil(fn, timeoutMs = 5000, intervalMs = 50) {
	const end = Date.now() + timeoutMs;
	let v;
	for (;;) {
		try { v = await fn(); } catch { v = undefined; }
		if (v) return v;
		if (Date.now() >= end) return v;
		await sleep(intervalMs);
	}
}

/* One HTTP request on a fresh connection (no agent, no keep-alive).
 * Returns {status, headers, text, json} (json: parsed body or undefined);
 * rejects on connection errors or after timeoutMs. */
export function httpRequest({ port, host = '127.0.0.1', method = 'GET', path: p = '/', headers = {}, body, timeoutMs = 10000 }) {
	return new Promise((resolve, reject) => {
		const data = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
		const h = { ...headers };
		if (data !== undefined) {
			if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
			h['content-length'] = Buffer.byteLength(data);
		}
		const req = http.request({ host, port, method, path: p, headers: h, agent: false }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				clearTimeout(timer);
				const text = Buffer.concat(chunks).toString('utf8');
				let json;
				try { json = JSON.parse(text); } catch { json = undefined; }
				resolve({ status: res.statusCode, headers: res.headers, text, json });
			});
			res.on('error', (e) => { clearTimeout(timer); reject(e); });
		});
		const timer = setTimeout(() => { req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${p}`)); }, timeoutMs);
		req.on('error', (e) => { clearTimeout(timer); reject(e); });
		if (data !== undefined) req.write(data);
		req.end();
	});
}

/* Collects a readable's text into t.buf (bounded to the last 4 MiB). */
function capture(stream, t, key) {
	t[key] = '';
	stream.setEncoding('utf8');
	stream.on('data', (d) => {
		t[key] += d;
		if (t[key].length > 4 << 20) t[key] = t[key].slice(-(4 << 20));
	});
}

// ---------------------------------------------------------------------------
// Fakes

export class Fake {
	constructor(name, child, port, t) {
		this.name = name;
		this.proc = child;
		this.port = port;
		this.url = `http://127.0.0.1:${port}`;
		this._t = t;
	}
	/* Text the fake wrote on stderr so far. */
	stderr() { return this._t.err || ''; }
	/* Every recorded request: [{seq, method, path, query, url, headers, rawHeaders, body, completed, aborted}]. */
	async requests() {
		const r = await httpRequest({ port: this.port, path: '/__requests' });
		assert.equal(r.status, 200, `fake ${this.name} /__requests`);
		return r.json;
	}
	/* Recorded requests other than the given ones (by seq) - what a step added. */
	async requestsSince(seq = 0) {
		return (await this.requests()).filter((x) => x.seq > seq);
	}
	/* Highest seq recorded so far (0 when none). */
	async lastSeq() {
		const r = await this.requests();
		return r.length ? r[r.length - 1].seq : 0;
	}
	async reset() {
		const r = await httpRequest({ port: this.port, method: 'POST', path: '/__reset', body: '{}' });
		assert.equal(r.status, 200, `fake ${this.name} /__reset`);
	}
	/* Sets global switches, e.g. {status: 500} or {reply: "x"}. */
	async control(obj) {
		const r = await httpRequest({ port: this.port, method: 'POST', path: '/__control', body: obj });
		assert.equal(r.status, 200, `fake ${this.name} /__control`);
	}
	async stop() { await stopProcess(this._t); }
}

/* Starts tests/fakes/NAME.mjs (or a path) with --port 0 and extra args;
 * resolves once it printed {"port":N}. */
export async function startFake(name, args = [], { timeoutMs = 5000 } = {}) {
	const script = name.includes('/') ? path.resolve(ROOT, name) : path.join(ROOT, 'tests/fakes', `${name}.mjs`);
	const child = spawn(process.execPath, [script, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
	const t = track(child, `fake:${name}`, false);
	capture(child.stderr, t, 'err');
	const port = await new Promise((resolve, reject) => {
		let out = '';
		const timer = setTimeout(() => reject(new Error(`fake ${name} did not print its port within ${timeoutMs} ms; stderr: ${t.err}`)), timeoutMs);
		child.stdout.setEncoding('utf8');
		child.stdout.on('data', (d) => {
			out += d;
			const nl = out.indexOf('\n');
			if (nl >= 0) {
				clearTimeout(timer);
				try { resolve(JSON.parse(out.slice(0, nl)).port); } catch (e) { reject(new Error(`fake ${name}: bad port line ${out.slice(0, nl)}`)); }
			}
		});
		child.on('error', (e) => { clearTimeout(timer); reject(e); });
		child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`fake ${name} exited (${code}) before listening; stderr: ${t.err}`)); });
	});
	return new Fake(name, child, port, t);
}

// ---------------------------------------------------------------------------
// llmproxy-admin and the temp home

/* Runs `llmproxy-admin --home HOME ...args`; resolves {code, signal, stdout,
 * stderr} (code null and timedOut true when killed after timeoutMs).
 * input, when given, is written to stdin. */
export async function admin(home, args, { input, env = {}, timeoutMs = 20000 } = {}) {
	const exe = binPath('llmproxy-admin');
	const child = spawn(exe, ['--home', home, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv(env) });
	const t = track(child, 'admin', false);
	capture(child.stdout, t, 'out');
	capture(child.stderr, t, 'err');
	child.stdin.on('error', () => {});
	if (input !== undefined) child.stdin.write(input);
	child.stdin.end();
	let timedOut = false;
	const timer = setTimeout(() => { timedOut = true; killQuiet(child.pid, 'SIGKILL'); }, timeoutMs);
	const [code, signal] = await new Promise((resolve, reject) => {
		child.on('error', (e) => { clearTimeout(timer); reject(e); });
		child.on('close', (c, s) => { clearTimeout(timer); resolve([c, s]); });
	});
	live.delete(t);
	return { code, signal, stdout: t.out, stderr: t.err, timedOut };
}

/* A temporary llmproxy home (fs.mkdtemp) with helpers for the admin CLI.
 * Each helper checks the exit status and the printed id's form, and throws
 * with the CLI's stderr when something is off. */
export class Home {
	constructor(dir) { this.dir = dir; }
	static async create(prefix = 'llmproxy-it-') {
		const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
		tmpDirs.add(dir);
		return new Home(dir);
	}
	/* Runs the CLI in this home: {code, stdout, stderr}. */
	run(args, opts) { return admin(this.dir, args, opts); }
	/* Runs the CLI, asserts exit 0, returns stdout's non-empty trimmed lines. */
	async ok(args, opts) {
		const r = await this.run(args, opts);
		if (r.code !== 0) throw new Error(`llmproxy-admin ${args[0]} ${args[1] || ''} exited ${r.code}${r.timedOut ? ' (timeout)' : ''}: ${r.stderr.trim()}`);
		return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
	}
	async _id(args, prefix) {
		const lines = await this.ok(args);
		const re = new RegExp(`^${prefix}-[A-Za-z0-9_.-]+$`);
		if (!lines.length || !re.test(lines[0])) {
			throw new Error(`llmproxy-admin ${args[0]}: expected "${prefix}-..." alone on the first stdout line, got ${JSON.stringify(lines.slice(0, 2))}`);
		}
		return lines;
	}
	/* connection add; options is an object of --option k=v.  Returns conn-…. */
	async connection({ name, provider, endpoint, apiKey, apiVersion, options = {} }) {
		const a = ['connection', 'add', '--name', name, '--provider', provider, '--endpoint', endpoint, '--api-key', apiKey];
		if (apiVersion) a.push('--api-version', apiVersion);
		for (const [k, v] of Object.entries(options)) a.push('--option', `${k}=${v}`);
		return (await this._id(a, 'conn'))[0];
	}
	/* model add (conn: id or name).  Returns model-…. */
	async model({ conn, name, remote, deployment, kind }) {
		const a = ['model', 'add', '--conn-id', conn, '--name', name, '--remote', remote];
		if (deployment) a.push('--deployment', deployment);
		if (kind) a.push('--kind', kind);
		return (await this._id(a, 'model'))[0];
	}
	/* vkey add.  Returns {id, key} (key generated by the CLI when none given). */
	async vkey({ name, key, expires }) {
		const a = ['vkey', 'add', '--name', name];
		if (key) a.push('--key', key);
		if (expires) a.push('--expires', expires);
		const lines = await this._id(a, 'vkey');
		const k = key || lines[1];
		if (!k) throw new Error('vkey add without --key printed no key on the second line');
		return { id: lines[0], key: k };
	}
	async revoke(idOrName) { await this.ok(['vkey', 'revoke', idOrName]); }
	async enable(idOrName) { await this.ok(['vkey', 'enable', idOrName]); }
	/* assign.  Returns asg-…. */
	async assign({ vkey, model, alias, tps, rpm, tpm, burst, weight }) {
		const a = ['assign', '--vkey-id', vkey, '--model-id', model, '--alias', alias];
		for (const [f, v] of [['--tps', tps], ['--rpm', rpm], ['--tpm', tpm], ['--burst', burst], ['--weight', weight]]) {
			if (v !== undefined) a.push(f, String(v));
		}
		return (await this._id(a, 'asg'))[0];
	}
	/* One connection + model + vkey + assignment in one go (names derived
	 * from alias unless given).  Returns {conn, model, vkey: {id, key}, asg}.
	 * Note: one home serves one `serve` at a time (its limiterd socket lives
	 * in the home), so a second proxy needs a second home. */
	async setupOne({ provider = 'openai', endpoint, apiKey, apiVersion, options, remote, deployment, kind, alias, key, connName, modelName, vkeyName, weight }) {
		const conn = await this.connection({ name: connName || `conn-for-${alias}`, provider, endpoint, apiKey, apiVersion, options });
		const model = await this.model({ conn, name: modelName || `model-for-${alias}`, remote, deployment, kind });
		const vkey = await this.vkey({ name: vkeyName || `key-for-${alias}`, key });
		const asg = await this.assign({ vkey: vkey.id, model, alias, weight });
		return { conn, model, vkey, asg };
	}
}

// ---------------------------------------------------------------------------
// The proxy (`llmproxy-admin serve`)

export class Proxy {
	constructor(child, port, t) {
		this.proc = child;
		this.pid = child.pid;
		this.port = port;
		this.url = `http://127.0.0.1:${port}`;
		this.baseURL = this.url;
		this.v1URL = `${this.url}/v1`;
		this._t = t;
	}
	/* Everything serve and its children wrote to stderr (and stdout) so far. */
	logs() { return (this._t.err || '') + (this._t.out || ''); }
	running() { return this.proc.exitCode === null && this.proc.signalCode === null; }
	/* GET /healthz on a fresh connection: the status (0 on connection error). */
	async health(timeoutMs = 3000) {
		try {
			return (await httpRequest({ port: this.port, path: '/healthz', timeoutMs })).status;
		} catch {
			return 0;
		}
	}
	/* Asserts /healthz answers 200 (the process stays healthy). */
	async assertHealthy(what = '') {
		assert.equal(await this.health(), 200, `/healthz after ${what}`);
	}
	/* Sends a request to the proxy on a fresh connection. */
	request(opts) { return httpRequest({ port: this.port, ...opts }); }
	async stop(graceMs = 3000) { await stopProcess(this._t, graceMs); }
}

/* Starts `llmproxy-admin --home H serve --listen 127.0.0.1:PORT ...args` on a
 * free port, in its own process group, and waits for GET /healthz = 200
 * (healthTimeoutMs).  Retries on another port if the first one was taken. */
export async function startProxy(home, { args = [], env = {}, healthTimeoutMs = 10000 } = {}) {
	const exe = binPath('llmproxy-admin');
	const dir = home instanceof Home ? home.dir : home;
	let lastErr;
	for (let attempt = 0; attempt < 3; attempt++) {
		const port = await freePort();
		const child = spawn(exe, ['--home', dir, 'serve', '--listen', `127.0.0.1:${port}`, ...args], {
			stdio: ['ignore', 'pipe', 'pipe'], env: childEnv(env), detached: true,
		});
		const t = track(child, 'proxy', true);
		capture(child.stdout, t, 'out');
		capture(child.stderr, t, 'err');
		let exited = false;
		child.on('exit', () => { exited = true; });
		const spawnErr = new Promise((r) => child.once('error', r));
		const end = Date.now() + healthTimeoutMs;
		let ok = false;
		while (Date.now() < end && !exited) {
			const st = await Promise.race([
				httpRequest({ port, path: '/healthz', timeoutMs: 1000 }).then((r) => r.status, () => 0),
				spawnErr.then(() => -1),
			]);
			if (st === 200) { ok = true; break; }
			if (st === -1) break;
			await sleep(100);
		}
		if (ok) return new Proxy(child, port, t);
		const logs = (t.err || '') + (t.out || '');
		await stopProcess(t, 1000);
		lastErr = new Error(`proxy (serve --listen 127.0.0.1:${port} ${args.join(' ')}) ${exited ? `exited (code ${child.exitCode}, signal ${child.signalCode})` : `gave no 200 on /healthz within ${healthTimeoutMs} ms`}; output:\n${logs.slice(-4000)}`);
		if (!(exited && /in use|EADDRINUSE|bind/i.test(logs))) break;
	}
	throw lastErr;
}

// ---------------------------------------------------------------------------
// Raw HTTP over net.Socket (for malformed requests and keep-alive checks)

/* Builds an HTTP/1.1 request text: {method, path, headers, body, keepAlive}.
 * Host and Content-Length are added unless given (pass null to omit). */
export function buildRequest({ method = 'GET', path: p = '/', headers = {}, body, keepAlive = true, host = '127.0.0.1' }) {
	const h = { ...headers };
	const has = (n) => Object.keys(h).some((k) => k.toLowerCase() === n);
	const data = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
	if (!has('host')) h.Host = host;
	if (body !== undefined && !has('content-length') && !has('transfer-encoding')) h['Content-Length'] = Buffer.byteLength(data);
	if (body !== undefined && !has('content-type')) h['Content-Type'] = 'application/json';
	if (!keepAlive && !has('connection')) h.Connection = 'close';
	let s = `${method} ${p} HTTP/1.1\r\n`;
	for (const [k, v] of Object.entries(h)) if (v !== null) s += `${k}: ${v}\r\n`;
	return s + '\r\n' + data;
}

/* Parses the head of an HTTP response text: {status, reason, headers
 * (lowercased names; repeats joined with ", "), headerList, headLen} or null
 * when the head is incomplete. */
export function parseHead(text) {
	const end = text.indexOf('\r\n\r\n');
	if (end < 0) return null;
	const lines = text.slice(0, end).split('\r\n');
	const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
	if (!m) return { status: -1, reason: lines[0], headers: {}, headerList: [], headLen: end + 4 };
	const headers = {};
	const headerList = [];
	for (const l of lines.slice(1)) {
		const i = l.indexOf(':');
		if (i <= 0) continue;
		const k = l.slice(0, i).trim().toLowerCase();
		const v = l.slice(i + 1).trim();
		headerList.push([k, v]);
		headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
	}
	return { status: Number(m[1]), reason: m[2] || '', headers, headerList, headLen: end + 4 };
}

/* Parses one HTTP response at the start of buf: {status, reason, headers,
 * headerList, body (de-chunked), raw, consumed} or null when incomplete
 * (closed: the peer closed, so a body without length ends here). */
export function parseResponse(buf, { closed = false, headOnly = false } = {}) {
	const text = buf.toString('latin1');
	const h = parseHead(text);
	if (!h) return null;
	const rest = buf.subarray(h.headLen);
	const done = (bodyBuf, consumed) => ({
		status: h.status, reason: h.reason, headers: h.headers, headerList: h.headerList,
		body: bodyBuf.toString('utf8'), raw: buf.subarray(0, consumed).toString('utf8'), consumed,
	});
	if (headOnly || (h.status >= 100 && h.status < 200) || h.status === 204 || h.status === 304) return done(Buffer.alloc(0), h.headLen);
	const te = (h.headers['transfer-encoding'] || '').toLowerCase();
	if (te.includes('chunked')) {
		let off = 0;
		const parts = [];
		for (;;) {
			const nl = rest.indexOf('\r\n', off);
			if (nl < 0) return null;
			const size = parseInt(rest.subarray(off, nl).toString('latin1').split(';')[0].trim(), 16);
			if (Number.isNaN(size)) return done(Buffer.concat(parts), buf.length); // garbage: take all
			off = nl + 2;
			if (size === 0) {
				// trailers until an empty line
				for (;;) {
					const e = rest.indexOf('\r\n', off);
					if (e < 0) return null;
					const empty = e === off;
					off = e + 2;
					if (empty) return done(Buffer.concat(parts), h.headLen + off);
				}
			}
			if (rest.length < off + size + 2) return null;
			parts.push(rest.subarray(off, off + size));
			off += size + 2;
		}
	}
	if (h.headers['content-length'] !== undefined) {
		const n = Number(h.headers['content-length'].split(',')[0]);
		if (rest.length < n) return null;
		return done(rest.subarray(0, n), h.headLen + n);
	}
	if (!closed) return null; // read until close
	return done(rest, buf.length);
}

/* A client socket that keeps what it received; reads responses one by one. */
export class RawConn {
	constructor(sock) {
		this.sock = sock;
		this.buf = Buffer.alloc(0);
		this.closed = false;
		this.error = null;
		this._wake = [];
		sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this._notify(); });
		sock.on('error', (e) => { this.error = e; this._notify(); });
		sock.on('close', () => { this.closed = true; this.closedAt = Date.now(); this._notify(); });
	}
	/* Connects to 127.0.0.1:port (rejects after timeoutMs). */
	static open(port, { host = '127.0.0.1', timeoutMs = 5000 } = {}) {
		return new Promise((resolve, reject) => {
			const sock = net.connect({ port, host });
			const timer = setTimeout(() => { sock.destroy(); reject(new Error(`connect timeout ${host}:${port}`)); }, timeoutMs);
			sock.once('connect', () => { clearTimeout(timer); sock.setNoDelay(true); resolve(new RawConn(sock)); });
			sock.once('error', (e) => { clearTimeout(timer); reject(e); });
		});
	}
	_notify() { const w = this._wake; this._wake = []; for (const f of w) f(); }
	_wait(ms) { return new Promise((r) => { const t = setTimeout(r, ms); this._wake.push(() => { clearTimeout(t); r(); }); }); }
	/* Writes bytes; resolves true when flushed, false when the socket failed. */
	write(data) {
		return new Promise((resolve) => {
			if (this.closed || this.sock.destroyed) return resolve(false);
			try {
				this.sock.write(data, (err) => resolve(!err));
			} catch {
				resolve(false);
			}
		});
	}
	/* Everything received and not yet consumed, as text. */
	text() { return this.buf.toString('latin1'); }
	/* Waits until pred(text) is true, the socket closes, or timeoutMs passes.
	 * Returns pred's last result. */
	async waitFor(pred, timeoutMs = 5000) {
		const end = Date.now() + timeoutMs;
		for (;;) {
			const v = pred(this.buf.toString('utf8'));
			if (v || this.closed || Date.now() >= end) return v;
			await this._wait(Math.max(1, end - Date.now()));
		}
	}
	/* Waits for the peer to close; returns {closed, ms} (ms since the call). */
	async waitClosed(timeoutMs = 5000) {
		const start = Date.now();
		const end = start + timeoutMs;
		while (!this.closed && Date.now() < end) await this._wait(Math.max(1, end - Date.now()));
		return { closed: this.closed, ms: Date.now() - start };
	}
	/* Reads one complete response from the stream (skipping 1xx unless
	 * keep1xx).  Returns {status, reason, headers, headerList, body, raw}; body
	 * is de-chunked.  Throws on timeout, or when the socket closed before a
	 * complete response (the partial text is in the message). */
	async readResponse({ timeoutMs = 10000, head = false, keep1xx = false } = {}) {
		const end = Date.now() + timeoutMs;
		for (;;) {
			const r = this._tryParse(head);
			if (r) {
				this.buf = this.buf.subarray(r.consumed);
				if (r.status >= 100 && r.status < 200 && r.status !== 101 && !keep1xx) continue;
				delete r.consumed;
				return r;
			}
			if (this.closed) {
				const partial = this.buf.toString('utf8');
				throw Object.assign(new Error(`connection closed before a complete response; got ${JSON.stringify(partial.slice(0, 300))}`), { partial, closedEarly: true });
			}
			if (Date.now() >= end) throw Object.assign(new Error(`no complete response within ${timeoutMs} ms; got ${JSON.stringify(this.buf.toString('utf8').slice(0, 300))}`), { timedOut: true });
			await this._wait(Math.max(1, end - Date.now()));
		}
	}
	_tryParse(headOnly) { return parseResponse(this.buf, { closed: this.closed, headOnly }); }
	/* write + readResponse. */
	async request(data, opts) {
		await this.write(data);
		return this.readResponse(opts);
	}
	destroy() { this.sock.destroy(); }
	end() { this.sock.end(); }
}

/* Sends bytes on a fresh connection, reads until the peer closes or
 * timeoutMs, and returns {text, status, headers, body, closed, timedOut, ms}
 * (status/headers/body of the first response, -1/{}/"" when none). */
export async function rawRequest(port, data, { timeoutMs = 5000, endWrite = false } = {}) {
	const start = Date.now();
	const c = await RawConn.open(port);
	await c.write(data);
	if (endWrite) c.sock.end();
	const { closed } = await c.waitClosed(timeoutMs);
	const text = c.buf.toString('utf8');
	c.destroy();
	let status = -1, headers = {}, body = '';
	const h = parseHead(c.buf.toString('latin1'));
	if (h) {
		status = h.status;
		headers = h.headers;
		const r = parseResponse(c.buf, { closed: true });
		body = r ? r.body : text.slice(h.headLen);
	}
	return { text, status, headers, body, closed, timedOut: !closed, ms: Date.now() - start };
}

/* Writes a request whose body is big (a Buffer or string), in pieces, and
 * stops writing as soon as the server answers or closes; then reads the
 * response.  For 413/431 tests where the server may answer early.
 * head: the request head text (ending with \r\n\r\n). */
export async function sendLarge(port, head, body, { pieceSize = 64 * 1024, timeoutMs = 15000 } = {}) {
	const c = await RawConn.open(port);
	const start = Date.now();
	const answered = () => c.buf.length > 0 || c.closed;
	await c.write(head);
	await c.waitFor(() => answered(), 100);
	const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
	for (let off = 0; off < b.length && !answered(); off += pieceSize) {
		const ok = await Promise.race([c.write(b.subarray(off, off + pieceSize)), sleep(2000).then(() => 'slow')]);
		if (ok === false) break;
		if (ok === 'slow' && answered()) break;
	}
	let res = null, err = null;
	try {
		res = await c.readResponse({ timeoutMs: Math.max(1000, timeoutMs - (Date.now() - start)) });
	} catch (e) {
		err = e;
	}
	const closed = (await c.waitClosed(2000)).closed;
	c.destroy();
	return { res, err, closed, ms: Date.now() - start };
}

/* Splits an SSE text into event data payloads (data: lines joined by "\n");
 * accepts \n\n, \r\n\r\n and \r\r separators; comments skipped. */
export function parseSSE(text) {
	const events = [];
	for (const block of text.split(/\r\n\r\n|\n\n|\r\r/)) {
		const data = [];
		for (const line of block.split(/\r\n|\n|\r/)) {
			if (line.startsWith(':')) continue;
			if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
		}
		if (data.length) events.push(data.join('\n'));
	}
	return events;
}

// ---------------------------------------------------------------------------
// OpenAI client and assertions

let OpenAIClass = null;
/* The official client: new OpenAI({apiKey, baseURL, maxRetries: 0, timeout: 10000}). */
export async function openaiClient({ apiKey, baseURL, ...rest }) {
	if (!OpenAIClass) OpenAIClass = (await import('openai')).default;
	return new OpenAIClass({ apiKey, baseURL, maxRetries: 0, timeout: 10000, ...rest });
}

/* Body of a chat request for alias with one user message. */
export function chatBody(model, text = 'Hello there', extra = {}) {
	return { model, messages: [{ role: 'user', content: text }], ...extra };
}

/* Authorization header object for a virtual key. */
export const bearer = (key) => ({ Authorization: `Bearer ${key}` });

/* Asserts an HTTP answer {status, text|body} is an OpenAI error:
 * {"error":{"message","type","param","code"}} with the given status and,
 * when given, code / type / a substring of the message.  Returns error. */
export function assertOpenAIError(res, { status, code, type, messageIncludes } = {}, what = '') {
	const text = res.text !== undefined ? res.text : res.body;
	const label = what ? `${what}: ` : '';
	if (status !== undefined) {
		if (Array.isArray(status)) assert.ok(status.includes(res.status), `${label}status ${res.status} not in ${status}; body ${text && text.slice(0, 300)}`);
		else assert.equal(res.status, status, `${label}status; body ${text && text.slice(0, 300)}`);
	}
	let j;
	try { j = JSON.parse(text); } catch { assert.fail(`${label}error body is not JSON: ${JSON.stringify((text || '').slice(0, 300))}`); }
	assert.ok(j && typeof j.error === 'object' && j.error !== null, `${label}no "error" object in ${text.slice(0, 300)}`);
	const e = j.error;
	for (const k of ['message', 'type', 'param', 'code']) assert.ok(k in e, `${label}error.${k} missing in ${text.slice(0, 300)}`);
	assert.equal(typeof e.message, 'string', `${label}error.message is a string`);
	assert.ok(e.message.length > 0, `${label}error.message is not empty`);
	assert.ok(e.type === null || typeof e.type === 'string', `${label}error.type string|null`);
	assert.ok(e.param === null || typeof e.param === 'string', `${label}error.param string|null`);
	assert.ok(e.code === null || typeof e.code === 'string', `${label}error.code string|null`);
	if (code !== undefined) assert.equal(e.code, code, `${label}error.code`);
	if (type !== undefined) assert.equal(e.type, type, `${label}error.type`);
	if (messageIncludes !== undefined) assert.ok(e.message.includes(messageIncludes), `${label}error.message ${JSON.stringify(e.message)} should mention ${JSON.stringify(messageIncludes)}`);
	return e;
}

/* Asserts none of the secrets occurs in haystack (the message names the
 * secret by index only, so a failure does not print it). */
export function assertNoSecret(haystack, secrets, where) {
	const s = typeof haystack === 'string' ? haystack : JSON.stringify(haystack);
	secrets.forEach((sec, i) => {
		assert.ok(sec && sec.length >= 6, `secret #${i} is too short to search for`);
		assert.ok(!s.includes(sec), `secret #${i} found in ${where}`);
	});
}

/* Reads the whole body of an OpenAI-client stream: {content, chunks, toolCalls}. */
export async function collectStream(stream) {
	const chunks = [];
	let content = '';
	const toolCalls = {};
	for await (const ch of stream) {
		chunks.push(ch);
		for (const c of ch.choices || []) {
			if (c.delta && typeof c.delta.content === 'string') content += c.delta.content;
			for (const tc of (c.delta && c.delta.tool_calls) || []) {
				const t = toolCalls[tc.index] || (toolCalls[tc.index] = { id: undefined, name: '', arguments: '' });
				if (tc.id) t.id = tc.id;
				if (tc.function && tc.function.name) t.name += tc.function.name;
				if (tc.function && tc.function.arguments) t.arguments += tc.function.arguments;
			}
		}
	}
	return { content, chunks, toolCalls: Object.values(toolCalls) };
}

/* Number of whitespace-separated words: the fakes' token counting. */
export function words(s) {
	const t = String(s).trim();
	return t ? t.split(/\s+/).length : 0;
}

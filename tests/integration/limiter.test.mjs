// limiter.test.mjs - limiterd end to end (issue 4): shared request and token
// buckets across connections and processes, 429 bodies and headers, the
// usage ledger and /metrics against the fake upstream's reported usage, and
// a killed / restarted limiterd.
//
// The test runs its own limiterd (on a socket in the temp home, writing the
// home's database) and points proxyd at it with `serve ... --limiter EP`, so
// it can kill and restart that limiterd without serve noticing.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as L from './lib.mjs';

after(async () => {
	if (limiterd) await stopLimiterd();
	await L.stopAll();
});

const CRED = 'sk-upstream-lim-9f8e7d6c5b4a39281706';
const VK1 = 'vk-it-lim-one-0a1b2c3d4e5f6a7b8c9d0e1f';
const VK2 = 'vk-it-lim-two-1b2c3d4e5f6a7b8c9d0e1f2a';

let fake, home, proxy, sock, endpoint, limiterd, limiterdErr = '';
let vk1, vk2;

function startLimiterd() {
	limiterdErr = '';
	const child = spawn(L.binPath('limiterd'), ['--socket', endpoint, '--db', path.join(home.dir, 'llmproxy.db'), '--flush-ms', '50'],
		{ stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LLMPROXY_DB: '', LLMPROXY_LIMITER: '' } });
	child.stderr.setEncoding('utf8');
	child.stderr.on('data', (d) => { limiterdErr += d; });
	child.unref();
	child.stderr.unref();
	limiterd = child;
	return L.waitUntil(() => /serving/.test(limiterdErr) || child.exitCode !== null, 5000).then(() => {
		assert.equal(child.exitCode, null, `limiterd exited at start: ${limiterdErr}`);
	});
}

async function stopLimiterd(sig = 'SIGTERM') {
	const c = limiterd;
	limiterd = null;
	if (!c || c.exitCode !== null || c.signalCode !== null) return;
	const exited = new Promise((r) => c.once('exit', (code, signal) => r({ code, signal })));
	c.kill(sig);
	return Promise.race([exited, L.sleep(5000).then(() => { c.kill('SIGKILL'); return { code: null, signal: 'timeout' }; })]);
}

before(async () => {
	fake = await L.startFake('openai', ['--key', CRED]);
	home = await L.Home.create('llmproxy-lim-');
	sock = path.join(home.dir, 'lt', 'limiterd.sock');
	endpoint = `ipc://${sock}`;
	const conn = await home.connection({ name: 'l-main', provider: 'openai', endpoint: fake.url, apiKey: CRED });
	// a second connection with a connection-wide limit, shared by two keys
	await home.ok(['connection', 'add', '--name', 'l-shared', '--provider', 'openai', '--endpoint', fake.url, '--api-key', CRED, '--rpm', '3']);
	const m = await home.model({ conn, name: 'l-chat', remote: 'gpt-4o-mini' });
	const ms = await home.model({ conn: 'l-shared', name: 'l-chat-shared', remote: 'gpt-4o-mini' });
	vk1 = await home.vkey({ name: 'l-key-1', key: VK1 });
	vk2 = await home.vkey({ name: 'l-key-2', key: VK2 });
	await home.assign({ vkey: vk1.id, model: m, alias: 'tps5', tps: 5 });
	await home.assign({ vkey: vk1.id, model: m, alias: 'tpm', tpm: 100 });
	await home.assign({ vkey: vk1.id, model: m, alias: 'acct' });
	await home.assign({ vkey: vk1.id, model: m, alias: 'restart' });
	await home.assign({ vkey: vk1.id, model: m, alias: 'broken' });
	await home.assign({ vkey: vk1.id, model: ms, alias: 'shared' });
	await home.assign({ vkey: vk2.id, model: ms, alias: 'shared' });
	await startLimiterd();
	proxy = await L.startProxy(home, { args: ['--limiter', endpoint] });
}, { timeout: 60000 });

const chat = (key, alias, text = 'hello there', extra = {}, timeoutMs = 15000) =>
	proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(key), body: L.chatBody(alias, text, extra), timeoutMs });

/* Asserts a 429 from our limiter: OpenAI body, Retry-After, retry-after-ms. */
function assert429(r, type, what) {
	L.assertOpenAIError(r, { status: 429, code: 'rate_limit_exceeded', type }, what);
	const ra = r.headers['retry-after'];
	const ram = r.headers['retry-after-ms'];
	assert.match(String(ra), /^\d+$/, `${what}: Retry-After is whole seconds (${ra})`);
	assert.match(String(ram), /^\d+$/, `${what}: retry-after-ms (${ram})`);
	assert.ok(Number(ram) > 0, `${what}: retry-after-ms > 0`);
	assert.ok(Number(ra) >= 1 && Number(ra) * 1000 >= Number(ram), `${what}: Retry-After ${ra} s covers retry-after-ms ${ram}`);
}

/* OpenAI-style reset durations: 12ms, 1s, 6m0s, 1.5s ... */
const DURATION = /^(\d+h)?(\d+m)?(\d+(\.\d+)?s)?(\d+ms)?$/;

test('--tps 5: 20 concurrent connections -> 5..10 pass, the rest 429 "requests"; a second later requests pass', { timeout: 30000 }, async () => {
	const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => chat(VK1, 'tps5', `burst ${i}`)));
	const ok = rs.filter((r) => r.status === 200);
	const limited = rs.filter((r) => r.status === 429);
	assert.equal(ok.length + limited.length, 20, `only 200 and 429: ${rs.map((r) => r.status).join(',')}`);
	assert.ok(ok.length >= 5 && ok.length <= 10, `between 5 and 5+burst pass, got ${ok.length}`);
	for (const r of limited) {
		assert429(r, 'requests', 'tps 429');
		assert.equal(r.headers['x-ratelimit-limit-requests'], '5', 'limit = burst capacity');
		assert.equal(r.headers['x-ratelimit-remaining-requests'], '0');
		assert.match(r.headers['x-ratelimit-reset-requests'] || '', DURATION);
		assert.ok(Number(r.headers['retry-after-ms']) <= 1000, `one request refills within 200 ms at 5/s (${r.headers['retry-after-ms']})`);
	}
	for (const r of ok) {
		assert.equal(r.headers['x-ratelimit-limit-requests'], '5', 'x-ratelimit-limit-requests on success');
		const rem = Number(r.headers['x-ratelimit-remaining-requests']);
		assert.ok(rem >= 0 && rem <= 4, `remaining ${rem}`);
		assert.match(r.headers['x-ratelimit-reset-requests'] || '', DURATION);
	}
	await L.sleep(1100);
	const again = await chat(VK1, 'tps5', 'after a second');
	assert.equal(again.status, 200, again.text);
});

test('connection --rpm 3 shared by two virtual keys: the fourth request of either key is denied', { timeout: 30000 }, async () => {
	const order = [VK1, VK2, VK1, VK2, VK1];
	const rs = [];
	for (const k of order) rs.push(await chat(k, 'shared', 'shared bucket'));
	assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 429, 429], rs.map((r) => r.text.slice(0, 120)).join('\n'));
	for (const r of rs.slice(3)) {
		assert429(r, 'requests', 'shared connection');
		assert.ok(Number(r.headers['retry-after-ms']) > 1000, 'a per-minute bucket refills slowly');
	}
});

/* Sum of usage the client saw, per kind. */
const addUsage = (acc, u) => { acc.prompt += u.prompt_tokens; acc.completion += u.completion_tokens; acc.n++; return acc; };

/* The ledger for alias via `llmproxy-admin usage --json`, waiting for the flush. */
async function ledger(alias, want) {
	let rows;
	await L.waitUntil(async () => {
		const r = await home.run(['usage', '--alias', alias, '--since', '1h', '--json']);
		assert.equal(r.code, 0, r.stderr);
		rows = JSON.parse(r.stdout);
		const n = rows.reduce((s, x) => s + x.requests, 0);
		return n >= want;
	}, 5000, 50);
	return rows;
}

async function metrics() {
	const r = await proxy.request({ path: '/metrics' });
	assert.equal(r.status, 200, r.text);
	assert.match(r.headers['content-type'] || '', /^text\/plain/);
	return r.text;
}

/* Value of one sample line `name{labels} value`, or 0 when absent. */
function sample(text, name, labels) {
	const want = `${name}{${labels}} `;
	const line = text.split('\n').find((l) => l.startsWith(want));
	return line ? Number(line.slice(want.length)) : 0;
}

test('usage rows and /metrics match the upstream-reported usage exactly, streamed and not', { timeout: 30000 }, async () => {
	const seen = { prompt: 0, completion: 0, n: 0 };
	for (const text of ['one two three', 'a somewhat longer prompt with more words in it']) {
		const r = await chat(VK1, 'acct', text);
		assert.equal(r.status, 200, r.text);
		assert.equal(r.json.usage.prompt_tokens, L.words(text), 'the fake counts words');
		addUsage(seen, r.json.usage);
	}
	const client = await L.openaiClient({ apiKey: VK1, baseURL: proxy.v1URL });
	const stream = await client.chat.completions.create({ model: 'acct', messages: [{ role: 'user', content: 'stream me some words please' }], stream: true, stream_options: { include_usage: true } });
	const { chunks } = await L.collectStream(stream);
	const last = chunks.filter((c) => c.usage).pop();
	assert.ok(last, 'a usage chunk was streamed');
	addUsage(seen, last.usage);
	// a stream whose client did not ask for usage is accounted all the same
	const quiet = await client.chat.completions.create({ model: 'acct', messages: [{ role: 'user', content: 'quiet stream of five' }], stream: true });
	const q = await L.collectStream(quiet);
	assert.ok(q.chunks.every((c) => !c.usage), 'no usage chunk forced on the client');
	seen.prompt += 4;
	seen.completion += L.words(q.content);
	seen.n++;

	const rows = await ledger('acct', 4);
	assert.equal(rows.length, 1, JSON.stringify(rows));
	assert.equal(rows[0].vkey, 'l-key-1');
	assert.equal(rows[0].vkey_id, vk1.id);
	assert.equal(rows[0].requests, 4);
	assert.equal(rows[0].errors, 0);
	assert.equal(rows[0].prompt_tokens, seen.prompt, 'ledger prompt tokens');
	assert.equal(rows[0].completion_tokens, seen.completion, 'ledger completion tokens');

	const m = await metrics();
	assert.equal(sample(m, 'llmproxy_requests_total', 'alias="acct",provider="openai",status="200"'), 4, m);
	assert.equal(sample(m, 'llmproxy_tokens_total', 'alias="acct",provider="openai",kind="prompt"'), seen.prompt);
	assert.equal(sample(m, 'llmproxy_tokens_total', 'alias="acct",provider="openai",kind="completion"'), seen.completion);
	assert.match(m, /^# TYPE llmproxy_upstream_latency_seconds histogram$/m);
	assert.match(m, /^llmproxy_upstream_latency_seconds_bucket\{provider="openai",le="\+Inf"\} \d+$/m);
	assert.match(m, /^llmproxy_upstream_latency_seconds_count\{provider="openai"\} \d+$/m);
	assert.match(m, /^llmproxy_active_connections \d+$/m);
	assert.match(m, /^llmproxy_reservations_open \d+$/m);
	// the 429s of the tests before were counted as denials
	assert.ok(sample(m, 'llmproxy_rate_limited_total', 'alias="shared",type="requests"') >= 2, m);
});

test('a stream broken upstream is charged what it relayed (no usage chunk ever came)', { timeout: 30000 }, async () => {
	const r = await chat(VK1, 'broken', 'a b c d e f g h __fake:drop_mid_stream', { stream: true });
	assert.equal(r.status, 200);
	assert.ok(!r.text.includes('[DONE]'));
	const relayed = L.parseSSE(r.text).filter((d) => !d.includes('"error"'))
		.map((d) => JSON.parse(d)).flatMap((c) => c.choices.map((ch) => (ch.delta && ch.delta.content) || '')).join('');
	assert.ok(relayed.length > 0, 'some content was relayed before the break');
	const rows = await ledger('broken', 1);
	assert.equal(rows[0].requests, 1);
	assert.ok(rows[0].prompt_tokens > 0, `prompt charged (${rows[0].prompt_tokens})`);
	assert.ok(rows[0].completion_tokens > 0, `completion charged from what was relayed (${rows[0].completion_tokens})`);
});

test('--tpm 100: once the minute\'s tokens are used, 429 "tokens"; the ledger matches the upstream', { timeout: 30000 }, async () => {
	const text = Array.from({ length: 25 }, (_, i) => `w${i}`).join(' ');
	const seen = { prompt: 0, completion: 0, n: 0 };
	let denied = null;
	for (let i = 0; i < 10 && !denied; i++) {
		const r = await chat(VK1, 'tpm', text, { max_tokens: 5 });
		if (r.status === 200) {
			addUsage(seen, r.json.usage);
			assert.equal(r.headers['x-ratelimit-limit-tokens'], '100');
			assert.match(r.headers['x-ratelimit-remaining-tokens'] || '', /^\d+$/);
			assert.match(r.headers['x-ratelimit-reset-tokens'] || '', DURATION);
		} else {
			denied = r;
		}
	}
	assert.ok(seen.n >= 1, 'at least one request passed before the bucket ran dry');
	assert.ok(seen.prompt + seen.completion <= 100 + 60, `no more than a minute's tokens (+ one request) went through: ${JSON.stringify(seen)}`);
	assert.ok(denied, 'a request was denied');
	assert429(denied, 'tokens', 'tpm 429');
	assert.equal(denied.headers['x-ratelimit-limit-tokens'], '100');
	assert.ok(Number(denied.headers['retry-after-ms']) > 1000, 'tokens refill at 100/min: seconds, not ms');

	const rows = await ledger('tpm', seen.n + 1);
	const total = rows.reduce((a, x) => ({ requests: a.requests + x.requests, errors: a.errors + x.errors, p: a.p + x.prompt_tokens, c: a.c + x.completion_tokens }), { requests: 0, errors: 0, p: 0, c: 0 });
	assert.equal(total.requests, seen.n + 1, 'one row per request, the 429 included');
	assert.equal(total.errors, 1);
	assert.equal(total.p, seen.prompt);
	assert.equal(total.c, seen.completion);
	const m = await metrics();
	assert.equal(sample(m, 'llmproxy_rate_limited_total', 'alias="tpm",type="tokens"'), 1, m);
	assert.equal(sample(m, 'llmproxy_tokens_total', 'alias="tpm",provider="openai",kind="prompt"'), seen.prompt);
});

test('a second limiterd on the same socket refuses to start', { timeout: 15000 }, async () => {
	const r = await new Promise((resolve) => {
		const c = spawn(L.binPath('limiterd'), ['--socket', endpoint], { stdio: ['ignore', 'ignore', 'pipe'] });
		let err = '';
		c.stderr.on('data', (d) => { err += d; });
		const t = setTimeout(() => c.kill('SIGKILL'), 5000);
		c.on('exit', (code) => { clearTimeout(t); resolve({ code, err }); });
	});
	assert.equal(r.code, 1, r.err);
	assert.match(r.err, /limiterd: fatal: another limiterd is serving ipc:\/\//);
	assert.ok(fs.existsSync(sock), 'the running limiterd kept its socket');
	assert.equal((await chat(VK1, 'restart', 'still served')).status, 200);
});

test('limiterd killed -> 503 quickly, no hang; restarted -> requests pass without restarting serve', { timeout: 30000 }, async () => {
	assert.equal((await chat(VK1, 'restart', 'before')).status, 200);
	await stopLimiterd('SIGKILL');
	for (let i = 0; i < 3; i++) {
		const t0 = Date.now();
		const r = await chat(VK1, 'restart', `while down ${i}`, {}, 5000);
		const ms = Date.now() - t0;
		L.assertOpenAIError(r, { status: 503 }, 'limiter down');
		assert.ok(ms < 2000, `503 came in ${ms} ms`);
	}
	// a keep-alive connection opened before the restart recovers too
	const c = await L.RawConn.open(proxy.port);
	try {
		const req = () => L.buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK1), body: L.chatBody('restart', 'keep-alive') });
		const down = await c.request(req());
		assert.equal(down.status, 503, down.body);
		await startLimiterd();
		const up = await L.waitUntil(async () => (await chat(VK1, 'restart', 'after restart')).status === 200, 5000, 100);
		assert.ok(up, 'requests pass again after the restart');
		const same = await c.request(req());
		assert.equal(same.status, 200, `the old connection's proxyd reconnected: ${same.body}`);
	} finally {
		c.destroy();
	}
	assert.ok(proxy.running(), 'serve was not restarted');
	// the restarted limiterd starts with full buckets: a burst passes again
	const rs = await Promise.all(Array.from({ length: 3 }, (_, i) => chat(VK1, 'tps5', `fresh ${i}`)));
	assert.deepEqual(rs.map((r) => r.status), [200, 200, 200]);
});

test('SIGTERM: limiterd flushes its ledger and exits 0', { timeout: 15000 }, async () => {
	const r = await chat(VK1, 'restart', 'last words');
	assert.equal(r.status, 200);
	const before = JSON.parse((await home.run(['usage', '--alias', 'restart', '--since', '1h', '--json'])).stdout);
	const st = await stopLimiterd('SIGTERM');
	assert.equal(st.code, 0, limiterdErr);
	assert.ok(!fs.existsSync(sock), 'socket removed on a clean exit');
	const rows = JSON.parse((await home.run(['usage', '--alias', 'restart', '--since', '1h', '--json'])).stdout);
	const n = (x) => x.reduce((s, y) => s + y.requests, 0);
	assert.ok(n(rows) >= n(before), 'nothing lost');
	// every request on 'restart' was settled: 200s before and after, 503s are not ledger rows
	assert.equal(rows[0].errors, 0);
});

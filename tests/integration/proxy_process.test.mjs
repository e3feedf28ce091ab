// proxy_process.test.mjs - one process per client connection (issue 3).
//
// Assumes the proxy adds an `x-llmproxy-pid: <pid>` response header naming the
// process that serves the connection.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import * as L from './lib.mjs';

after(L.stopAll);

const CRED = 'sk-upstream-proc-3c4d5e6f7a8b9c0d1e2f';
const VK = 'vk-it-proc-1a2b3c4d5e6f7a8b9c0d1e2f3a4b';

let fake, home, proxy;

before(async () => {
	fake = await L.startFake('openai', ['--key', CRED]);
	home = await L.Home.create();
	const conn = await home.connection({ name: 'p-main', provider: 'openai', endpoint: fake.url, apiKey: CRED });
	const m = await home.model({ conn, name: 'p-chat', remote: 'gpt-4o-mini' });
	const vk = await home.vkey({ name: 'p-key', key: VK });
	await home.assign({ vkey: vk.id, model: m, alias: 'chat' });
	proxy = await L.startProxy(home);
}, { timeout: 60000 });

const chat = (text = 'hi') => L.buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('chat', text) });
const models = () => L.buildRequest({ path: '/v1/models', headers: L.bearer(VK) });

/* The pid a response names (asserts the header is there and numeric). */
function pidOf(r) {
	const v = r.headers['x-llmproxy-pid'];
	assert.ok(v !== undefined, `x-llmproxy-pid header present (headers: ${JSON.stringify(r.headers)})`);
	assert.match(v, /^\d+$/);
	return Number(v);
}

/* {ppid, pgrp} of pid from /proc, or null when it is gone (or a zombie). */
function statOf(pid) {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
		if (rest[0] === 'Z') return null; // state ppid pgrp ...
		return { ppid: Number(rest[1]), pgrp: Number(rest[2]) };
	} catch {
		return null;
	}
}

/* The command line of pid ("" when gone). */
function cmdline(pid) {
	try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim(); } catch { return ''; }
}

/* True when pid is a (grand)child of ancestor. */
function isDescendant(pid, ancestor) {
	for (let p = pid, n = 0; p > 1 && n < 64; n++) {
		const s = statOf(p);
		if (!s) return false;
		if (s.ppid === ancestor) return true;
		p = s.ppid;
	}
	return false;
}

/* Every live descendant of ancestor. */
function descendants(ancestor) {
	return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((p) => isDescendant(p, ancestor));
}

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; } };

test('two connections are served by two distinct processes; one keep-alive socket by one', { timeout: 20000 }, async () => {
	const a = await L.RawConn.open(proxy.port);
	const b = await L.RawConn.open(proxy.port);
	try {
		const a1 = await a.request(models());
		const b1 = await b.request(models());
		const a2 = await a.request(chat('again on a'));
		const b2 = await b.request(chat('again on b'));
		for (const r of [a1, b1, a2, b2]) assert.equal(r.status, 200, r.body);
		const [pa1, pb1, pa2, pb2] = [a1, b1, a2, b2].map(pidOf);
		assert.notEqual(pa1, pb1, 'distinct pids over two sockets');
		assert.equal(pa1, pa2, 'same pid within keep-alive socket a');
		assert.equal(pb1, pb2, 'same pid within keep-alive socket b');
		for (const p of [pa1, pb1]) {
			assert.notEqual(p, proxy.pid, 'not the listener itself');
			assert.notEqual(p, process.pid);
		}
	} finally {
		a.destroy();
		b.destroy();
	}
	// a later connection gets a fresh process (the old one exits with its connection)
	const c = await L.RawConn.open(proxy.port);
	try {
		const r = await c.request(models());
		assert.equal(r.status, 200);
		pidOf(r);
	} finally {
		c.destroy();
	}
});

test('a connection process exits when its connection closes', { timeout: 20000 }, async () => {
	const c = await L.RawConn.open(proxy.port);
	const r = await c.request(models());
	const pid = pidOf(r);
	assert.ok(alive(pid), 'serving process alive while the connection is open');
	c.end();
	c.destroy();
	const gone = await L.waitUntil(() => !alive(pid) || statOf(pid) === null, 5000);
	assert.ok(gone, `process ${pid} gone after the client closed`);
});

test('a crash of one connection process does not disturb another', { timeout: 20000 }, async () => {
	const a = await L.RawConn.open(proxy.port);
	const b = await L.RawConn.open(proxy.port);
	try {
		const pa = pidOf(await a.request(models()));
		const pb = pidOf(await b.request(models()));
		assert.notEqual(pa, pb);
		// only ever kill a process of the proxy we started
		assert.ok(isDescendant(pa, proxy.pid), `pid ${pa} is a child of the proxy we started`);
		process.kill(pa, 'SIGKILL');
		const { closed } = await a.waitClosed(3000);
		assert.ok(closed, 'the crashed connection is closed');
		const rb = await b.request(chat('b survives'));
		assert.equal(rb.status, 200, rb.body);
		assert.equal(JSON.parse(rb.body).choices[0].message.content, 'Hello from fake openai');
		assert.equal(pidOf(rb), pb, 'b is still served by its own process');
		await proxy.assertHealthy('a crashed connection');
		const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('chat', 'new conn') });
		assert.equal(r.status, 200);
	} finally {
		a.destroy();
		b.destroy();
	}
});

test('SIGTERM to serve stops it and every connection process (slow)', { timeout: 40000 }, async () => {
	// a second proxy needs its own home (one limiterd per home)
	const home2 = await L.Home.create();
	await home2.setupOne({ endpoint: fake.url, apiKey: CRED, remote: 'gpt-4o-mini', alias: 'chat', key: VK });
	const p2 = await L.startProxy(home2);
	const idle = await L.RawConn.open(p2.port);
	const r = await idle.request(models());
	assert.equal(r.status, 200);
	const child = pidOf(r);
	assert.ok(isDescendant(child, p2.pid), 'the connection process is a child of serve');
	const started = descendants(p2.pid);
	assert.ok(started.includes(child));
	const exited = new Promise((res) => p2.proc.once('exit', (code, sig) => res({ code, sig })));
	process.kill(p2.pid, 'SIGTERM');
	const ex = await Promise.race([exited, L.sleep(15000).then(() => null)]);
	assert.ok(ex, 'serve exited within 15 s of SIGTERM');
	// once serve is gone, nothing it started may be left (an idle keep-alive
	// connection is not in flight; in-flight ones are waited for before exit)
	const left = () => started.filter((p) => alive(p) && statOf(p) !== null);
	await L.waitUntil(() => left().length === 0, 2000);
	const rest = left().map((p) => `${p}: ${cmdline(p)}`);
	assert.deepEqual(rest, [], 'every process serve started is gone when serve has exited');
	idle.destroy();
	const refused = await new Promise((res) => {
		const s = net.connect({ port: p2.port, host: '127.0.0.1' });
		s.once('connect', () => { s.destroy(); res(false); });
		s.once('error', () => res(true));
	});
	assert.ok(refused, 'the port no longer accepts connections');
	await p2.stop();
	await proxy.assertHealthy('another instance stopping');
});

test('--max-conns caps connection processes: a connection over the cap waits, then is served', { timeout: 30000 }, async () => {
	const capped = await L.startProxy(home, { args: ['--max-conns', '2', '--spares', '1'] });
	const a = await L.RawConn.open(capped.port);
	const b = await L.RawConn.open(capped.port);
	let c;
	try {
		assert.equal((await a.request(models())).status, 200);
		assert.equal((await b.request(models())).status, 200);
		// both processes are taken and held open: the third must wait
		c = await L.RawConn.open(capped.port);
		await c.write(models());
		const early = await c.waitFor((t) => t.startsWith('HTTP/1.1'), 1500);
		assert.ok(!early, 'no answer while the cap is reached');
		assert.ok(!c.closed, 'the waiting connection is not refused');
		a.destroy(); // frees one process
		const r = await c.readResponse({ timeoutMs: 10000 });
		assert.equal(r.status, 200, 'served once a process is free');
		assert.notEqual(pidOf(r), pidOf(await b.request(models())));
	} finally {
		a.destroy();
		b.destroy();
		if (c) c.destroy();
		await capped.stop();
	}
});

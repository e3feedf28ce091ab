// proxy_badinput.test.mjs - bad clients, bad keys, malformed HTTP and failing
// upstreams (issue 3).  Every case asserts the status, the OpenAI error body
// {"error":{"message","type","param","code"}} and that /healthz still answers.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from './lib.mjs';

after(L.stopAll);

const CRED = 'sk-upstream-bad-8e7f6a5b4c3d2e1f0a9b';
const CRED_B = 'sk-upstream-failing-1f2e3d4c5b6a7980';
const CRED_G = 'sk-upstream-good-a0b1c2d3e4f5a6b7c8d9';
const VK = 'vk-it-bad-good-0123456789abcdef01234567';
const VK_REV = 'vk-it-bad-revoked-76543210fedcba987654';
const VK_EXP = 'vk-it-bad-expiring-aa11bb22cc33dd44ee55';
const VK_OTHER = 'vk-it-bad-other-99887766554433221100aa';
const SECRETS = [CRED, CRED_B, CRED_G, VK, VK_REV, VK_EXP, VK_OTHER];
const MiB = 1024 * 1024;

let fake, fakeBad, fakeBad429, fakeGood, home, proxy, expCreatedAt;

before(async () => {
	fake = await L.startFake('openai', ['--key', CRED]);
	fakeBad = await L.startFake('openai', ['--key', CRED_B]);
	fakeBad429 = await L.startFake('openai', ['--key', CRED_B]);
	fakeGood = await L.startFake('openai', ['--key', CRED_G]);
	await fakeBad.control({ status: 500 });
	await fakeBad429.control({ status: 429 });
	await fakeGood.control({ reply: 'served by good' });
	const deadPort = await L.freePort();

	home = await L.Home.create();
	const conn = await home.connection({ name: 'main', provider: 'openai', endpoint: fake.url, apiKey: CRED });
	const connBad = await home.connection({ name: 'failing-500', provider: 'openai', endpoint: fakeBad.url, apiKey: CRED_B });
	const connBad429 = await home.connection({ name: 'failing-429', provider: 'openai', endpoint: fakeBad429.url, apiKey: CRED_B });
	const connGood = await home.connection({ name: 'good', provider: 'openai', endpoint: fakeGood.url, apiKey: CRED_G });
	const connDown = await home.connection({ name: 'down', provider: 'openai', endpoint: `http://127.0.0.1:${deadPort}`, apiKey: CRED });
	const m = await home.model({ conn, name: 'm-main', remote: 'gpt-4o-mini' });
	const mBad = await home.model({ conn: connBad, name: 'm-500', remote: 'gpt-4o-mini' });
	const mBad429 = await home.model({ conn: connBad429, name: 'm-429', remote: 'gpt-4o-mini' });
	const mGood = await home.model({ conn: connGood, name: 'm-good', remote: 'gpt-4o-mini' });
	const mDown = await home.model({ conn: connDown, name: 'm-down', remote: 'gpt-4o-mini' });

	const vk = await home.vkey({ name: 'bad-good', key: VK });
	const vkRev = await home.vkey({ name: 'bad-revoked', key: VK_REV });
	const vkOther = await home.vkey({ name: 'bad-other', key: VK_OTHER });
	await home.assign({ vkey: vk.id, model: m, alias: 'chat' });
	await home.assign({ vkey: vk.id, model: mDown, alias: 'down' });
	await home.assign({ vkey: vk.id, model: mBad, alias: 'only-500' });
	// same alias on a failing and a healthy connection; the failing one is
	// weighted so that it is (almost always) tried first
	await home.assign({ vkey: vk.id, model: mBad, alias: 'fb-500', weight: 100 });
	await home.assign({ vkey: vk.id, model: mGood, alias: 'fb-500', weight: 1 });
	await home.assign({ vkey: vk.id, model: mBad429, alias: 'fb-429', weight: 100 });
	await home.assign({ vkey: vk.id, model: mGood, alias: 'fb-429', weight: 1 });
	await home.assign({ vkey: vk.id, model: mDown, alias: 'fb-down', weight: 100 });
	await home.assign({ vkey: vk.id, model: mGood, alias: 'fb-down', weight: 1 });
	await home.assign({ vkey: vkRev.id, model: m, alias: 'chat' });
	await home.assign({ vkey: vkOther.id, model: m, alias: 'others-alias' });
	await home.revoke(vkRev.id);
	const vkExp = await home.vkey({ name: 'bad-expiring', key: VK_EXP, expires: '1s' });
	expCreatedAt = Date.now(); // the expiry is at most 1 s after this
	await home.assign({ vkey: vkExp.id, model: m, alias: 'chat' });
	proxy = await L.startProxy(home);
}, { timeout: 60000 });

/* POST /v1/chat/completions on a fresh connection. */
const post = (body, headers = L.bearer(VK), p = '/v1/chat/completions') =>
	proxy.request({ method: 'POST', path: p, headers, body });

/* Raw request on a fresh socket; returns {status, text, closed, ...}. */
async function raw(text, timeoutMs = 5000) {
	const r = await L.rawRequest(proxy.port, text, { timeoutMs });
	return { ...r, text: r.body, rawText: r.text };
}

// --- keys ---------------------------------------------------------------

test('no key: 401 invalid_api_key', { timeout: 15000 }, async () => {
	L.assertOpenAIError(await post(L.chatBody('chat'), {}), { status: 401, code: 'invalid_api_key' }, 'no key');
	L.assertOpenAIError(await post(L.chatBody('chat'), { Authorization: 'Bearer' }), { status: 401, code: 'invalid_api_key' }, 'empty bearer');
	L.assertOpenAIError(await post(L.chatBody('chat'), { Authorization: `Basic ${Buffer.from(`x:${VK}`).toString('base64')}` }), { status: 401, code: 'invalid_api_key' }, 'basic auth');
	await proxy.assertHealthy('no key');
});

test('unknown key: 401 invalid_api_key, key not echoed', { timeout: 15000 }, async () => {
	const k = 'vk-this-key-does-not-exist-0000000000';
	const r = await post(L.chatBody('chat'), L.bearer(k));
	L.assertOpenAIError(r, { status: 401, code: 'invalid_api_key' }, 'unknown key');
	assert.ok(!r.text.includes(k), 'the presented key is not echoed back in full');
	await proxy.assertHealthy('unknown key');
});

test('revoked key: 401 invalid_api_key', { timeout: 15000 }, async () => {
	L.assertOpenAIError(await post(L.chatBody('chat'), L.bearer(VK_REV)), { status: 401, code: 'invalid_api_key' }, 'revoked');
	await proxy.assertHealthy('revoked key');
});

test('expired key (--expires 1s, then 2 s later): 401 invalid_api_key', { timeout: 15000 }, async () => {
	await L.sleep(Math.max(0, expCreatedAt + 2000 - Date.now()));
	L.assertOpenAIError(await post(L.chatBody('chat'), L.bearer(VK_EXP)), { status: 401, code: 'invalid_api_key' }, 'expired');
	await proxy.assertHealthy('expired key');
});

test('unassigned alias: 404 model_not_found naming the alias', { timeout: 15000 }, async () => {
	const seq = await fake.lastSeq();
	L.assertOpenAIError(await post(L.chatBody('no-such-alias')), { status: 404, code: 'model_not_found', messageIncludes: 'no-such-alias' }, 'unknown alias');
	L.assertOpenAIError(await post(L.chatBody('others-alias')), { status: 404, code: 'model_not_found', messageIncludes: 'others-alias' }, "another key's alias");
	L.assertOpenAIError(await post({ model: 'no-emb-alias', input: 'x' }, L.bearer(VK), '/v1/embeddings'), { status: 404, code: 'model_not_found', messageIncludes: 'no-emb-alias' }, 'embeddings alias');
	assert.equal((await fake.requestsSince(seq)).length, 0, 'nothing sent upstream');
	await proxy.assertHealthy('unassigned alias');
});

// --- bodies -------------------------------------------------------------

test('malformed JSON: 400', { timeout: 15000 }, async () => {
	L.assertOpenAIError(await post('{"model": "chat", "messages": [', L.bearer(VK)), { status: 400 }, 'truncated JSON');
	L.assertOpenAIError(await post('not json at all', L.bearer(VK)), { status: 400 }, 'not JSON');
	L.assertOpenAIError(await post('[1,2,3]', L.bearer(VK)), { status: 400 }, 'JSON array body');
	await proxy.assertHealthy('malformed JSON');
});

test('missing or non-string model: 400', { timeout: 15000 }, async () => {
	const seq = await fake.lastSeq();
	L.assertOpenAIError(await post({ messages: [{ role: 'user', content: 'hi' }] }), { status: 400 }, 'missing model');
	L.assertOpenAIError(await post({ model: 42, messages: [{ role: 'user', content: 'hi' }] }), { status: 400 }, 'numeric model');
	L.assertOpenAIError(await post({ input: 'x' }, L.bearer(VK), '/v1/embeddings'), { status: 400 }, 'embeddings without model');
	assert.equal((await fake.requestsSince(seq)).length, 0, 'nothing sent upstream');
	await proxy.assertHealthy('missing model');
});

test('unknown route 404 and wrong method 405, OpenAI-shaped', { timeout: 15000 }, async () => {
	L.assertOpenAIError(await proxy.request({ path: '/v1/nothing-here', headers: L.bearer(VK) }), { status: 404 }, 'unknown route');
	L.assertOpenAIError(await proxy.request({ method: 'POST', path: '/v2/chat/completions', headers: L.bearer(VK), body: L.chatBody('chat') }), { status: 404 }, 'unknown version');
	L.assertOpenAIError(await proxy.request({ path: '/v1/chat/completions', headers: L.bearer(VK) }), { status: 405 }, 'GET chat');
	L.assertOpenAIError(await proxy.request({ method: 'DELETE', path: '/v1/models', headers: L.bearer(VK) }), { status: 405 }, 'DELETE models');
	await proxy.assertHealthy('routes');
});

test('body over the limit (9 MiB): 413, Content-Length and chunked', { timeout: 40000 }, async () => {
	const big = Buffer.alloc(9 * MiB, 'a');
	const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${VK}\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n`;
	const r1 = await L.sendLarge(proxy.port, head, big);
	assert.ok(r1.res, `a response to the 9 MiB body (${r1.err && r1.err.message})`);
	L.assertOpenAIError({ status: r1.res.status, text: r1.res.body }, { status: 413 }, 'Content-Length 9 MiB');

	// the same amount as chunks (64 KiB each)
	const piece = Buffer.alloc(64 * 1024, 'b');
	const chunk = Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]);
	const chunks = Buffer.concat([...Array(144)].map(() => chunk).concat([Buffer.from('0\r\n\r\n')]));
	const headC = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${VK}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
	const r2 = await L.sendLarge(proxy.port, headC, chunks);
	assert.ok(r2.res, `a response to the 9 MiB chunked body (${r2.err && r2.err.message})`);
	L.assertOpenAIError({ status: r2.res.status, text: r2.res.body }, { status: 413 }, 'chunked 9 MiB');
	await proxy.assertHealthy('413');
});

test('oversized headers: 431 (one huge header; very many headers)', { timeout: 30000 }, async () => {
	const r1 = await L.sendLarge(proxy.port, `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${VK}\r\nX-Big: `, `${'x'.repeat(256 * 1024)}\r\n\r\n`);
	assert.ok(r1.res, `a response to a 256 KiB header (${r1.err && r1.err.message})`);
	L.assertOpenAIError({ status: r1.res.status, text: r1.res.body }, { status: 431 }, 'one 256 KiB header');
	let many = '';
	for (let i = 0; i < 2000; i++) many += `X-H${i}: v\r\n`;
	const r2 = await L.sendLarge(proxy.port, `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${VK}\r\n`, `${many}\r\n`);
	assert.ok(r2.res, `a response to 2000 headers (${r2.err && r2.err.message})`);
	L.assertOpenAIError({ status: r2.res.status, text: r2.res.body }, { status: 431 }, '2000 headers');
	await proxy.assertHealthy('431');
});

// --- framing / smuggling -------------------------------------------------

const BODY = JSON.stringify(L.chatBody('chat', 'hi'));

test('Content-Length with Transfer-Encoding: 400 and close', { timeout: 15000 }, async () => {
	const seq = await fake.lastSeq();
	const r = await raw(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${VK}\r\nContent-Length: ${BODY.length + 10}\r\nTransfer-Encoding: chunked\r\n\r\n${BODY.length.toString(16)}\r\n${BODY}\r\n0\r\n\r\n`);
	L.assertOpenAIError(r, { status: 400 }, 'CL+TE');
	assert.ok(r.closed, 'connection closed after the 400');
	assert.equal((await fake.requestsSince(seq)).length, 0, 'nothing sent upstream');
	await proxy.assertHealthy('CL+TE');
});

test('two differing Content-Length headers: 400 and close', { timeout: 15000 }, async () => {
	const r = await raw(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${VK}\r\nContent-Length: ${BODY.length}\r\nContent-Length: ${BODY.length + 5}\r\n\r\n${BODY}`);
	L.assertOpenAIError(r, { status: 400 }, 'double CL');
	assert.ok(r.closed, 'connection closed');
	const r2 = await raw(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${VK}\r\nContent-Length: ${BODY.length}, ${BODY.length + 5}\r\n\r\n${BODY}`);
	L.assertOpenAIError(r2, { status: 400 }, 'CL list');
	await proxy.assertHealthy('double CL');
});

test('unknown transfer coding, obs-fold, bare CR, bad method and target: 400', { timeout: 20000 }, async () => {
	const cases = [
		['unknown coding', `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${VK}\r\nTransfer-Encoding: gzip\r\n\r\n${BODY}`, [400, 501]],
		['obs-fold', `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${VK}\r\nX-Folded: a\r\n  b\r\n\r\n`, [400]],
		['bare CR in a header', `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${VK}\r\nX-A: a\rb\r\n\r\n`, [400]],
		['space before colon', `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer ${VK}\r\n\r\n`, [400]],
		['bad method token', `G@T /v1/models HTTP/1.1\r\nHost: x\r\n\r\n`, [400]],
		['bad target', `GET v1/models HTTP/1.1\r\nHost: x\r\n\r\n`, [400]],
		['bad version', `GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n`, [400, 505]],
	];
	for (const [name, text, statuses] of cases) {
		const r = await raw(text);
		assert.ok(statuses.includes(r.status), `${name}: status ${r.status}, expected ${statuses}; ${r.rawText.slice(0, 200)}`);
		if (r.text) L.assertOpenAIError(r, {}, name);
		assert.ok(r.closed, `${name}: connection closed`);
	}
	await proxy.assertHealthy('framing');
});

test('Expect: 100-continue answered only after the key checks out', { timeout: 15000 }, async () => {
	// bad key: a final 401, never "100 Continue"
	const c1 = await L.RawConn.open(proxy.port);
	try {
		await c1.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer vk-nope-nope-nope-nope\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\nExpect: 100-continue\r\n\r\n`);
		const r = await c1.readResponse({ keep1xx: true, timeoutMs: 5000 });
		assert.equal(r.status, 401, 'no 100 for a bad key');
	} finally {
		c1.destroy();
	}
	// good key: 100 Continue, then the answer
	const c2 = await L.RawConn.open(proxy.port);
	try {
		await c2.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${VK}\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\nExpect: 100-continue\r\n\r\n`);
		const r100 = await c2.readResponse({ keep1xx: true, timeoutMs: 5000 });
		assert.equal(r100.status, 100);
		await c2.write(BODY);
		const r = await c2.readResponse({ timeoutMs: 10000 });
		assert.equal(r.status, 200, r.body);
	} finally {
		c2.destroy();
	}
});

test('half a request then silence: the proxy closes it (head < 15 s, body < 35 s, idle < 20 s) (slow)', { timeout: 60000 }, async () => {
	// Nothing is configured: the proxy's default deadlines apply.  The three
	// clients wait concurrently.
	const head = await L.RawConn.open(proxy.port);
	const body = await L.RawConn.open(proxy.port);
	const idle = await L.RawConn.open(proxy.port);
	try {
		await head.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-');
		await body.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${VK}\r\nContent-Length: 500\r\n\r\n{"model":"chat",`);
		const [a, b, c] = await Promise.all([head.waitClosed(15000), body.waitClosed(35000), idle.waitClosed(20000)]);
		assert.ok(a.closed, 'half a head: closed within 15 s (head deadline)');
		assert.ok(b.closed, 'half a body: closed within 35 s (body deadline)');
		assert.ok(c.closed, 'connected but silent: closed within 20 s');
		for (const [conn, what] of [[head, 'head'], [body, 'body'], [idle, 'idle']]) {
			const t = conn.text();
			if (!t) continue;
			const r = L.parseResponse(conn.buf, { closed: true });
			assert.ok(r && [400, 408].includes(r.status), `${what}: if anything is sent, it is a 408/400: ${t.slice(0, 100)}`);
			L.assertOpenAIError({ status: r.status, text: r.body }, {}, `${what} timeout answer`);
		}
	} finally {
		head.destroy();
		body.destroy();
		idle.destroy();
	}
	await proxy.assertHealthy('stalled clients');
});

test('client vanishing mid-stream: upstream aborted, proxy keeps serving', { timeout: 30000 }, async () => {
	const seq = await fake.lastSeq();
	const reply = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
	const c = await L.RawConn.open(proxy.port);
	await c.write(L.buildRequest({
		method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK),
		body: { ...L.chatBody('chat', `go __fake:chunk_delay_ms=150 __fake:reply="${reply}"`), stream: true },
	}));
	const got = await c.waitFor((t) => t.includes('w1'), 10000);
	assert.ok(got, `stream started: ${c.text().slice(0, 200)}`);
	c.destroy();
	// the upstream transfer (40 x 150 ms = 6 s) must be aborted, not finished
	const up = await L.waitUntil(async () => (await fake.requestsSince(seq)).find((r) => r.aborted || r.completed), 5000);
	assert.ok(up, 'upstream request seen');
	assert.equal(up.aborted, true, 'upstream transfer aborted when the client went away');
	await proxy.assertHealthy('vanished client');
	const r = await post(L.chatBody('chat', 'next one'));
	assert.equal(r.status, 200, r.text);
});

// --- upstream failures ---------------------------------------------------

test('upstream down: 502', { timeout: 20000 }, async () => {
	L.assertOpenAIError(await post(L.chatBody('down', 'hello')), { status: 502 }, 'upstream down');
	L.assertOpenAIError(await post({ ...L.chatBody('down', 'hello'), stream: true }), { status: 502 }, 'upstream down, stream');
	await proxy.assertHealthy('upstream down');
});

test('upstream slow first byte beyond --first-byte-timeout-ms 500: 504', { timeout: 30000 }, async () => {
	// a second proxy needs its own home (one limiterd per home)
	const home2 = await L.Home.create();
	await home2.setupOne({ endpoint: fake.url, apiKey: CRED, remote: 'gpt-4o-mini', alias: 'chat', key: VK });
	const p2 = await L.startProxy(home2, { args: ['--first-byte-timeout-ms', '500'] });
	try {
		const t0 = Date.now();
		const r = await p2.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('chat', 'slow __fake:delay_first_byte_ms=3000') });
		const ms = Date.now() - t0;
		L.assertOpenAIError(r, { status: 504 }, 'slow upstream');
		assert.ok(ms < 2900, `answered before the upstream would have (${ms} ms)`);
		const s = await p2.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: { ...L.chatBody('chat', 'slow __fake:delay_first_byte_ms=3000'), stream: true } });
		L.assertOpenAIError(s, { status: 504 }, 'slow upstream, stream');
		const ok = await p2.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('chat', 'fast __fake:delay_first_byte_ms=100') });
		assert.equal(ok.status, 200, 'a delay under the timeout is fine');
		await p2.assertHealthy('504');
		L.assertNoSecret(p2.logs(), SECRETS, 'second proxy stderr');
	} finally {
		await p2.stop();
	}
});

test('upstream 429 with a single assignment: 429 to the client', { timeout: 20000 }, async () => {
	const r = await post(L.chatBody('chat', 'hi __fake:status=429'));
	L.assertOpenAIError(r, { status: 429 }, 'upstream 429');
	L.assertNoSecret(r.text, SECRETS, '429 body');
	await proxy.assertHealthy('429');
});

test('upstream 500 with a single assignment: 5xx OpenAI-shaped', { timeout: 20000 }, async () => {
	const r = await post(L.chatBody('only-500', 'hi'));
	L.assertOpenAIError(r, { status: [500, 502, 503] }, 'upstream 500');
	await proxy.assertHealthy('500');
});

test('fallback: same alias on a failing (500 / 429 / down) and a healthy connection succeeds', { timeout: 30000 }, async () => {
	const bad500 = await fakeBad.lastSeq();
	const bad429 = await fakeBad429.lastSeq();
	for (const alias of ['fb-500', 'fb-429', 'fb-down']) {
		for (let i = 0; i < 4; i++) {
			const r = await post(L.chatBody(alias, `try ${i}`));
			assert.equal(r.status, 200, `${alias} #${i}: ${r.text}`);
			assert.equal(r.json.choices[0].message.content, 'served by good', alias);
			assert.equal(r.json.model, alias);
		}
		const s = await post({ ...L.chatBody(alias, 'stream try'), stream: true });
		assert.equal(s.status, 200, `${alias} stream: ${s.text.slice(0, 200)}`);
		assert.ok(s.text.includes('served'), `${alias} stream content from the healthy upstream`);
	}
	assert.ok((await fakeBad.requestsSince(bad500)).length >= 1, 'the failing 500 upstream was tried');
	assert.ok((await fakeBad429.requestsSince(bad429)).length >= 1, 'the failing 429 upstream was tried');
	await proxy.assertHealthy('fallback');
});

test('after everything: proxy alive, no secret in its stderr', { timeout: 15000 }, async () => {
	assert.ok(proxy.running(), 'serve still running');
	await proxy.assertHealthy('the whole file');
	L.assertNoSecret(proxy.logs(), SECRETS, 'proxy stderr');
});

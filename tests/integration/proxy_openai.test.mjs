// proxy_openai.test.mjs - the proxy in front of OpenAI(-compatible) upstreams,
// driven by the official `openai` client (issue 3).
//
// Setup: two fake OpenAI servers (one at /v1, one posing as a Bedrock-style
// base /openai/v1), one home with connections, models, three virtual keys and
// their assignments, and `llmproxy-admin serve` on a free loopback port.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from './lib.mjs';

after(L.stopAll);

const CRED = 'sk-upstream-openai-5b1f0c9d7e3a2b48c6';
const CRED_BR = 'br-upstream-bedrock-7a6b5c4d3e2f1a0b9c';
const CRED_WRONG = 'sk-upstream-WRONG-0e1d2c3b4a5f6e7d8c';
const VK = 'vk-it-openai-a1b2c3d4e5f6a7b8c9d0e1f2a3';
const VK2 = 'vk-it-openai-other-0f9e8d7c6b5a49382716';
const VK3 = 'vk-it-openai-revoke-1122334455667788aabb';
const SECRETS_UPSTREAM = [CRED, CRED_BR, CRED_WRONG];
const VKEYS = [VK, VK2, VK3];
const ALIASES_VK = ['chat', 'emb', 'chat-v1', 'bedrock', 'badcred'];

let fake, fakeBR, home, proxy, vk1;

before(async () => {
	fake = await L.startFake('openai', ['--key', CRED]);
	fakeBR = await L.startFake('openai', ['--key', CRED_BR, '--path-prefix', '/openai/v1']);
	home = await L.Home.create();
	const conn = await home.connection({ name: 'oa-main', provider: 'openai', endpoint: fake.url, apiKey: CRED });
	const connV1 = await home.connection({ name: 'oa-v1', provider: 'openai', endpoint: `${fake.url}/v1`, apiKey: CRED });
	const connBR = await home.connection({ name: 'bedrock-like', provider: 'openai', endpoint: `${fakeBR.url}/openai/v1`, apiKey: CRED_BR });
	const connBad = await home.connection({ name: 'oa-badcred', provider: 'openai', endpoint: fake.url, apiKey: CRED_WRONG });
	const mChat = await home.model({ conn, name: 'oa-chat', remote: 'gpt-4o-mini' });
	const mEmb = await home.model({ conn: 'oa-main', name: 'oa-emb', remote: 'text-embedding-3-small', kind: 'embedding' });
	const mV1 = await home.model({ conn: connV1, name: 'oa-chat-v1', remote: 'gpt-4o' });
	const mBR = await home.model({ conn: connBR, name: 'br-chat', remote: 'openai.gpt-oss-20b-1:0' });
	const mBad = await home.model({ conn: connBad, name: 'oa-bad', remote: 'gpt-4o-mini' });
	vk1 = await home.vkey({ name: 'it-openai', key: VK });
	const vk2 = await home.vkey({ name: 'it-openai-2', key: VK2 });
	const vk3 = await home.vkey({ name: 'it-revoke', key: VK3 });
	await home.assign({ vkey: vk1.id, model: mChat, alias: 'chat' });
	await home.assign({ vkey: vk1.id, model: mEmb, alias: 'emb' });
	await home.assign({ vkey: 'it-openai', model: mV1, alias: 'chat-v1' });
	await home.assign({ vkey: vk1.id, model: mBR, alias: 'bedrock' });
	await home.assign({ vkey: vk1.id, model: mBad, alias: 'badcred' });
	await home.assign({ vkey: vk2.id, model: 'oa-chat', alias: 'other' });
	await home.assign({ vkey: vk3.id, model: mChat, alias: 'chat' });
	proxy = await L.startProxy(home);
}, { timeout: 60000 });

const bases = () => [['root', proxy.url], ['/v1', proxy.v1URL]];

test('non-stream chat (baseURL root and /v1): content, alias as model, usage, fields passed through', { timeout: 30000 }, async () => {
	for (const [label, baseURL] of bases()) {
		const seq = await fake.lastSeq();
		const client = await L.openaiClient({ apiKey: VK, baseURL });
		const messages = [{ role: 'system', content: 'Be brief' }, { role: 'user', content: 'Hello there proxy' }];
		const r = await client.chat.completions.create({ model: 'chat', messages, temperature: 0.5, seed: 7, user: 'it-user' });
		assert.equal(r.object, 'chat.completion', label);
		assert.equal(r.model, 'chat', `${label}: the model shown is the alias`);
		assert.equal(r.choices.length, 1, label);
		assert.equal(r.choices[0].message.role, 'assistant', label);
		assert.equal(r.choices[0].message.content, 'Hello from fake openai', label);
		assert.equal(r.choices[0].finish_reason, 'stop', label);
		assert.equal(r.usage.prompt_tokens, 5, `${label}: prompt tokens = words of all messages`);
		assert.equal(r.usage.completion_tokens, 4, label);
		assert.equal(r.usage.total_tokens, 9, label);

		const up = await fake.requestsSince(seq);
		assert.equal(up.length, 1, `${label}: exactly one upstream request`);
		assert.equal(up[0].method, 'POST');
		assert.equal(up[0].path, '/v1/chat/completions', label);
		assert.equal(up[0].headers.authorization, `Bearer ${CRED}`, `${label}: provider credential injected`);
		const body = JSON.parse(up[0].body);
		assert.equal(body.model, 'gpt-4o-mini', `${label}: alias replaced by the remote name`);
		assert.deepEqual(body.messages, messages, `${label}: messages untouched`);
		assert.equal(body.temperature, 0.5);
		assert.equal(body.seed, 7);
		assert.equal(body.user, 'it-user');
	}
});

test('custom reply passes through unchanged', { timeout: 15000 }, async () => {
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.v1URL });
	const r = await client.chat.completions.create(L.chatBody('chat', 'say it __fake:reply="zwölf Boxkämpfer jagen Viktor"'));
	assert.equal(r.choices[0].message.content, 'zwölf Boxkämpfer jagen Viktor');
	assert.equal(r.usage.completion_tokens, 4);
});

test('stream chat without include_usage (root and /v1): content assembled, proper end, no usage chunk', { timeout: 30000 }, async () => {
	for (const [label, baseURL] of bases()) {
		const seq = await fake.lastSeq();
		const client = await L.openaiClient({ apiKey: VK, baseURL });
		const stream = await client.chat.completions.create({ ...L.chatBody('chat', 'Stream to me please'), stream: true });
		const { content, chunks } = await L.collectStream(stream);
		assert.equal(content, 'Hello from fake openai', label);
		assert.ok(chunks.length >= 3, `${label}: several chunks (${chunks.length})`);
		for (const c of chunks) {
			assert.equal(c.object, 'chat.completion.chunk', label);
			assert.equal(c.model, 'chat', `${label}: every chunk shows the alias`);
			assert.ok(c.choices.length > 0, `${label}: no empty-choices (usage) chunk when the client did not ask`);
			assert.ok(c.usage === undefined || c.usage === null, `${label}: no usage when not asked`);
		}
		assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop', label);
		const up = await fake.requestsSince(seq);
		assert.equal(up.length, 1);
		const body = JSON.parse(up[0].body);
		assert.equal(body.stream, true);
		assert.equal(body.model, 'gpt-4o-mini');
		assert.equal(body.stream_options && body.stream_options.include_usage, true, 'the proxy asks upstream for usage');
	}
});

test('upstream dropping mid-stream: an SSE error event, never [DONE]; the SDK raises', { timeout: 20000 }, async () => {
	const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK),
		body: { ...L.chatBody('chat', 'a b c d e f __fake:drop_mid_stream'), stream: true } });
	assert.equal(r.status, 200);
	assert.ok(!r.text.includes('[DONE]'), r.text.slice(0, 400));
	const events = L.parseSSE(r.text);
	const last = JSON.parse(events.at(-1));
	assert.ok(last.error, 'the last event is an error');
	assert.equal(last.error.code, 'upstream_stream_broken');
	assert.ok(typeof last.error.message === 'string' && last.error.message.length > 0);
	for (const s of SECRETS_UPSTREAM) assert.ok(!r.text.includes(s));
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.v1URL });
	await assert.rejects(async () => {
		const stream = await client.chat.completions.create({ ...L.chatBody('chat', 'x y __fake:drop_mid_stream'), stream: true });
		for await (const _ of stream) { /* drain */ }
	}, 'the official client raises on the error event');
	const h = await proxy.request({ method: 'GET', path: '/healthz' });
	assert.equal(h.status, 200);
});

test('stream chat, raw bytes: SSE over chunked encoding ending with [DONE]', { timeout: 15000 }, async () => {
	const c = await L.RawConn.open(proxy.port);
	try {
		const r = await c.request(L.buildRequest({
			method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK),
			body: { ...L.chatBody('chat', 'raw stream'), stream: true },
		}));
		assert.equal(r.status, 200);
		assert.match(r.headers['content-type'] || '', /^text\/event-stream/);
		assert.match(r.headers['transfer-encoding'] || '', /chunked/, 'streamed with chunked encoding');
		const ev = L.parseSSE(r.body);
		assert.equal(ev.at(-1), '[DONE]');
		const json = ev.slice(0, -1).map((e) => JSON.parse(e));
		assert.ok(json.length >= 3);
		assert.ok(json.every((j) => !j.error), 'no error event');
		assert.ok(json.every((j) => j.choices.length > 0 && !j.usage), 'usage chunk hidden');
		assert.equal(json.map((j) => j.choices[0].delta.content || '').join(''), 'Hello from fake openai');
		assert.ok(/\n\n$/.test(r.body), 'ends with a complete event');
	} finally {
		c.destroy();
	}
});

test('stream chat with include_usage: final choices:[] usage chunk', { timeout: 15000 }, async () => {
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.url });
	const stream = await client.chat.completions.create({
		...L.chatBody('chat', 'count my words please'), stream: true, stream_options: { include_usage: true },
	});
	const { content, chunks } = await L.collectStream(stream);
	assert.equal(content, 'Hello from fake openai');
	const last = chunks.at(-1);
	assert.deepEqual(last.choices, [], 'usage chunk has empty choices');
	assert.equal(last.usage.prompt_tokens, 4);
	assert.equal(last.usage.completion_tokens, 4);
	assert.equal(last.usage.total_tokens, 8);
	assert.equal(chunks.filter((c) => c.usage).length, 1, 'exactly one chunk carries usage');
	assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop');
});

test('tool calls relayed, non-stream and stream', { timeout: 15000 }, async () => {
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.v1URL });
	const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }];
	const seq = await fake.lastSeq();
	const r = await client.chat.completions.create({ ...L.chatBody('chat', 'weather? __fake:tool_call=get_weather'), tools, tool_choice: 'auto' });
	assert.equal(r.choices[0].finish_reason, 'tool_calls');
	const tc = r.choices[0].message.tool_calls;
	assert.equal(tc.length, 1);
	assert.equal(tc[0].type, 'function');
	assert.equal(tc[0].function.name, 'get_weather');
	assert.deepEqual(JSON.parse(tc[0].function.arguments), { location: 'Paris' });
	const up = await fake.requestsSince(seq);
	assert.deepEqual(JSON.parse(up[0].body).tools, tools, 'tools passed through untouched');

	const s = await client.chat.completions.create({ ...L.chatBody('chat', 'weather? __fake:tool_call=get_weather'), tools, stream: true });
	const got = await L.collectStream(s);
	assert.equal(got.toolCalls.length, 1);
	assert.equal(got.toolCalls[0].name, 'get_weather');
	assert.deepEqual(JSON.parse(got.toolCalls[0].arguments), { location: 'Paris' });
	assert.equal(got.chunks.at(-1).choices[0].finish_reason, 'tool_calls');
});

test('embeddings: client default (base64) and float with array input', { timeout: 15000 }, async () => {
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.url });
	let seq = await fake.lastSeq();
	const r = await client.embeddings.create({ model: 'emb', input: 'hello embedding world' });
	assert.equal(r.model, 'emb', 'alias shown');
	assert.equal(r.data.length, 1);
	assert.equal(r.data[0].index, 0);
	assert.equal(r.data[0].embedding.length, 8);
	assert.ok([...r.data[0].embedding].every((x) => Number.isFinite(x) && x >= -1 && x <= 1));
	assert.equal(r.usage.prompt_tokens, 3);
	let up = await fake.requestsSince(seq);
	assert.equal(up.length, 1);
	assert.equal(up[0].path, '/v1/embeddings');
	const ub = JSON.parse(up[0].body);
	assert.equal(ub.model, 'text-embedding-3-small');
	assert.equal(ub.encoding_format, 'base64', 'encoding_format passed through');

	seq = await fake.lastSeq();
	const r2 = await client.embeddings.create({ model: 'emb', input: ['a b', 'c'], encoding_format: 'float' });
	assert.deepEqual(r2.data.map((d) => d.index), [0, 1]);
	assert.equal(r2.usage.prompt_tokens, 3);
	// Same vectors as the upstream gives for the same input (relayed untouched).
	const direct = await L.httpRequest({
		port: fake.port, method: 'POST', path: '/v1/embeddings', headers: { Authorization: `Bearer ${CRED}` },
		body: { model: 'text-embedding-3-small', input: ['a b', 'c'], encoding_format: 'float' },
	});
	assert.equal(direct.status, 200);
	assert.deepEqual(r2.data.map((d) => d.embedding), direct.json.data.map((d) => d.embedding));
	up = await fake.requestsSince(seq);
	assert.deepEqual(JSON.parse(up[0].body).input, ['a b', 'c']);
});

test('/v1/models and /models list exactly this key\'s aliases', { timeout: 15000 }, async () => {
	for (const [label, baseURL] of bases()) {
		const c1 = await L.openaiClient({ apiKey: VK, baseURL });
		const l1 = await c1.models.list();
		assert.deepEqual(l1.data.map((m) => m.id).sort(), [...ALIASES_VK].sort(), label);
		for (const m of l1.data) {
			assert.equal(m.object, 'model');
			assert.equal(typeof m.created, 'number');
			assert.equal(typeof m.owned_by, 'string');
		}
		const c2 = await L.openaiClient({ apiKey: VK2, baseURL });
		const l2 = await c2.models.list();
		assert.deepEqual(l2.data.map((m) => m.id), ['other'], label);
	}
	const raw = await proxy.request({ path: '/v1/models', headers: L.bearer(VK2) });
	assert.equal(raw.status, 200);
	assert.equal(raw.json.object, 'list');
	const noKey = await proxy.request({ path: '/v1/models' });
	L.assertOpenAIError(noKey, { status: 401, code: 'invalid_api_key' }, '/v1/models without key');
});

test('endpoint already ending in /v1 is respected (no /v1/v1)', { timeout: 15000 }, async () => {
	const seq = await fake.lastSeq();
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.url });
	const r = await client.chat.completions.create(L.chatBody('chat-v1', 'hi v1'));
	assert.equal(r.model, 'chat-v1');
	assert.equal(r.choices[0].message.content, 'Hello from fake openai');
	const up = await fake.requestsSince(seq);
	assert.equal(up.length, 1);
	assert.equal(up[0].path, '/v1/chat/completions');
	assert.equal(JSON.parse(up[0].body).model, 'gpt-4o');
});

test('OpenAI-compatible endpoint with another base path (Bedrock style /openai/v1)', { timeout: 15000 }, async () => {
	const seq = await fakeBR.lastSeq();
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.v1URL });
	const r = await client.chat.completions.create(L.chatBody('bedrock', 'hi bedrock'));
	assert.equal(r.model, 'bedrock');
	assert.equal(r.choices[0].message.content, 'Hello from fake openai');
	const s = await L.collectStream(await client.chat.completions.create({ ...L.chatBody('bedrock', 'stream bedrock'), stream: true }));
	assert.equal(s.content, 'Hello from fake openai');
	const up = await fakeBR.requestsSince(seq);
	assert.equal(up.length, 2);
	for (const u of up) {
		assert.equal(u.path, '/openai/v1/chat/completions');
		assert.equal(u.headers.authorization, `Bearer ${CRED_BR}`);
		assert.equal(JSON.parse(u.body).model, 'openai.gpt-oss-20b-1:0');
	}
});

test('virtual key accepted in an api-key header (as Azure SDKs send it)', { timeout: 15000 }, async () => {
	const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: { 'api-key': VK }, body: L.chatBody('chat', 'azure style') });
	assert.equal(r.status, 200, r.text);
	assert.equal(r.json.choices[0].message.content, 'Hello from fake openai');
});

test('keep-alive: several requests on one socket', { timeout: 20000 }, async () => {
	const c = await L.RawConn.open(proxy.port);
	try {
		const req = (text) => L.buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('chat', text) });
		const r1 = await c.request(req('first one'));
		assert.equal(r1.status, 200, r1.body);
		assert.notEqual((r1.headers.connection || '').toLowerCase(), 'close');
		assert.equal(JSON.parse(r1.body).usage.prompt_tokens, 2);
		assert.equal(c.closed, false, 'socket still open after the first response');
		const r2 = await c.request(req('second request here'));
		assert.equal(r2.status, 200, r2.body);
		assert.equal(JSON.parse(r2.body).usage.prompt_tokens, 3, 'second answer is for the second request');
		const r3 = await c.request(L.buildRequest({ method: 'GET', path: '/v1/models', headers: L.bearer(VK) }));
		assert.equal(r3.status, 200);
		const r4 = await c.request(L.buildRequest({ method: 'POST', path: '/chat/completions', headers: { ...L.bearer(VK), Connection: 'close' }, body: L.chatBody('chat', 'last') }));
		assert.equal(r4.status, 200);
		const { closed } = await c.waitClosed(3000);
		assert.ok(closed, 'Connection: close honoured');
	} finally {
		c.destroy();
	}
});

test('revocation applies to the next request (same socket and new client)', { timeout: 20000 }, async () => {
	const c = await L.RawConn.open(proxy.port);
	try {
		const req = () => L.buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK3), body: L.chatBody('chat', 'before revoke') });
		const r1 = await c.request(req());
		assert.equal(r1.status, 200, r1.body);
		await home.revoke('it-revoke');
		const r2 = await c.request(req());
		L.assertOpenAIError({ status: r2.status, text: r2.body }, { status: 401, code: 'invalid_api_key' }, 'revoked key, same socket');
	} finally {
		c.destroy();
	}
	const client = await L.openaiClient({ apiKey: VK3, baseURL: proxy.url });
	await assert.rejects(client.chat.completions.create(L.chatBody('chat', 'after revoke')), (e) => {
		assert.equal(e.status, 401);
		assert.equal(e.code, 'invalid_api_key');
		return true;
	});
	// other keys unaffected
	const ok = await (await L.openaiClient({ apiKey: VK, baseURL: proxy.url })).chat.completions.create(L.chatBody('chat', 'still fine'));
	assert.equal(ok.choices[0].message.content, 'Hello from fake openai');
});

test('upstream rejecting the provider credential: OpenAI-shaped error, credential not echoed', { timeout: 15000 }, async () => {
	const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('badcred', 'hello') });
	assert.ok(r.status >= 400, `status ${r.status}`);
	L.assertOpenAIError(r, { status: [401, 403, 502] }, 'upstream 401');
	L.assertNoSecret(r.text, SECRETS_UPSTREAM, 'the client response');
	L.assertNoSecret(JSON.stringify(r.headers), SECRETS_UPSTREAM, 'the client response headers');
	const up = (await fake.requests()).at(-1);
	assert.equal(up.headers.authorization, `Bearer ${CRED_WRONG}`, 'the (wrong) credential was used upstream');
});

test('provider credentials never reach the client (raw responses of every kind)', { timeout: 30000 }, async () => {
	const c = await L.RawConn.open(proxy.port);
	const seen = [];
	try {
		const post = (path, body, key = VK) => L.buildRequest({ method: 'POST', path, headers: L.bearer(key), body });
		const reqs = [
			post('/v1/chat/completions', L.chatBody('chat', 'hi')),
			post('/v1/chat/completions', { ...L.chatBody('chat', 'hi'), stream: true, stream_options: { include_usage: true } }),
			post('/v1/embeddings', { model: 'emb', input: 'x y' }),
			L.buildRequest({ path: '/v1/models', headers: L.bearer(VK) }),
			post('/v1/chat/completions', L.chatBody('nope-alias', 'hi')),
			post('/v1/chat/completions', L.chatBody('chat', 'hi __fake:status=429')),
			post('/v1/chat/completions', L.chatBody('chat', 'hi __fake:status=500')),
			post('/v1/chat/completions', L.chatBody('chat', 'hi __fake:status=400')),
			post('/v1/chat/completions', L.chatBody('bedrock', 'hi __fake:status=401')),
			post('/v1/chat/completions', L.chatBody('badcred', 'hi')),
			post('/v1/chat/completions', L.chatBody('chat', 'hi'), 'vk-unknown-key-000000000000'),
		];
		for (const q of reqs) {
			if (c.closed) break;
			const r = await c.request(q);
			seen.push(r.raw);
		}
	} finally {
		c.destroy();
	}
	assert.ok(seen.length >= 4, `got ${seen.length} responses on one socket`);
	L.assertNoSecret(seen.join('\n'), SECRETS_UPSTREAM, 'client responses');
});

test('the virtual key never reaches an upstream (headers, URL, body)', { timeout: 15000 }, async () => {
	const all = [...(await fake.requests()), ...(await fakeBR.requests())];
	assert.ok(all.length >= 10, `upstreams saw ${all.length} requests`);
	for (const r of all) {
		L.assertNoSecret(JSON.stringify(r.rawHeaders) + r.url + r.body, VKEYS, `upstream request #${r.seq} ${r.path}`);
		const extra = Object.keys(r.headers).filter((h) => h === 'api-key' || h === 'x-api-key');
		assert.deepEqual(extra, [], 'no other key headers upstream');
	}
});

test('request log: one line per request, no secrets', { timeout: 15000 }, async () => {
	await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('chat', 'log me') });
	// the log line may be written just after the response
	const line = await L.waitUntil(() => proxy.logs().split('\n').find((l) => l.includes(vk1.id) && /\bchat\b/.test(l) && /\b200\b/.test(l)), 3000);
	assert.ok(line, `a log line names vkey id, alias and status; logs:\n${proxy.logs().slice(-2000)}`);
	assert.match(line, /openai/, 'provider in the log line');
	L.assertNoSecret(proxy.logs(), [...SECRETS_UPSTREAM, ...VKEYS], 'proxy stderr');
	await proxy.assertHealthy('all of the above');
});

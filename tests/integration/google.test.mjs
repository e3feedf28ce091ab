// google.test.mjs - the proxy in front of Google upstreams (issue 5), driven
// by the official `openai` client against the fake Google server in all four
// flavours: AI Studio key, Vertex express key, Vertex OAuth token, Vertex
// service-account JSON (JWT RS256 exchanged at the fake's /token).
//
// Setup: an RSA key pair made with openssl at test time, one fake
// (tests/fakes/google.mjs --sa-public-key), one home with a connection per
// flavour (--provider gemini / vertex, as a loopback endpoint needs), a chat
// and an embedding model each, and `llmproxy-admin serve`.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as L from './lib.mjs';

after(L.stopAll);

const KEY_AIS = 'AIzaSyFAKE-aistudio-key-0123456789abcd';
const KEY_EXPRESS = 'AQ.Ab8RFAKE-express-key-0123456789abcd';
const TOKEN_STATIC = 'ya29.FAKE-static-oauth-token-0123456789';
const KEY_BAD = 'AIzaSyFAKE-invalid-key-9876543210zyxw';
const VK = 'vk-it-google-0a1b2c3d4e5f60718293a4b5';
const FLAVOURS = ['aistudio', 'express', 'bearer', 'sa'];

let fake, home, proxy, tmp, saJSON, cacheDir, cacheDir2;

function client() {
	return L.openaiClient({ apiKey: VK, baseURL: proxy.v1URL });
}

async function tokenCount() {
	const r = await L.httpRequest({ port: fake.port, path: '/__token_count' });
	return r.json.count;
}

before(async () => {
	tmp = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'llmproxy-google-it-'));
	const priv = path.join(tmp, 'sa.pem'), pub = path.join(tmp, 'sa.pub');
	execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', priv], { stdio: 'ignore' });
	execFileSync('openssl', ['pkey', '-in', priv, '-pubout', '-out', pub], { stdio: 'ignore' });
	fake = await L.startFake('google', ['--sa-public-key', pub, '--api-key', KEY_AIS, '--api-key', KEY_EXPRESS, '--bearer', TOKEN_STATIC]);
	saJSON = {
		type: 'service_account', project_id: 'sa-proj-it', private_key_id: 'kid-it-1',
		private_key: fs.readFileSync(priv, 'utf8'), client_email: 'it-bot@sa-proj-it.iam.gserviceaccount.com',
		client_id: '1', token_uri: `${fake.url}/token`,
	};
	const saFile = path.join(tmp, 'sa.json');
	fs.writeFileSync(saFile, JSON.stringify(saJSON), { mode: 0o600 });
	cacheDir = path.join(tmp, 'tokens');
	cacheDir2 = path.join(tmp, 'tokens2');

	home = await L.Home.create();
	const conns = {
		aistudio: await home.connection({ name: 'g-aistudio', provider: 'gemini', endpoint: fake.url, apiKey: KEY_AIS }),
		express: await home.connection({ name: 'g-express', provider: 'vertex', endpoint: fake.url, apiKey: KEY_EXPRESS }),
		bearer: await home.connection({ name: 'g-bearer', provider: 'vertex', endpoint: fake.url, apiKey: TOKEN_STATIC, options: { project: 'proj-it', location: 'us-central1' } }),
	};
	const saArgs = (name, dir) => ['connection', 'add', '--name', name, '--provider', 'vertex', '--endpoint', fake.url, '--api-key-file', saFile, '--option', `token_cache=${dir}`];
	conns.sa = (await home.ok(saArgs('g-sa', cacheDir)))[0];
	const connBurst = (await home.ok(saArgs('g-sa-burst', cacheDir2)))[0];
	const connBad = await home.connection({ name: 'g-badkey', provider: 'gemini', endpoint: fake.url, apiKey: KEY_BAD });
	const vk = await home.vkey({ name: 'it-google', key: VK });
	for (const f of FLAVOURS) {
		const m = await home.model({ conn: conns[f], name: `${f}-chat-m`, remote: 'gemini-2.5-flash' });
		const e = await home.model({ conn: conns[f], name: `${f}-emb-m`, remote: 'text-embedding-004', kind: 'embedding' });
		await home.assign({ vkey: vk.id, model: m, alias: `${f}-chat` });
		await home.assign({ vkey: vk.id, model: e, alias: `${f}-emb` });
	}
	await home.assign({ vkey: vk.id, model: await home.model({ conn: connBurst, name: 'burst-m', remote: 'gemini-2.5-flash' }), alias: 'burst-chat' });
	await home.assign({ vkey: vk.id, model: await home.model({ conn: connBad, name: 'bad-m', remote: 'gemini-2.5-flash' }), alias: 'bad-chat' });
	await home.assign({ vkey: vk.id, model: await home.model({ conn: conns.aistudio, name: 'missing-m', remote: 'missing-model' }), alias: 'missing-chat' });
	proxy = await L.startProxy(home);
}, { timeout: 90000 });

function expectAuth(flavour, headers) {
	if (flavour === 'aistudio') assert.equal(headers['x-goog-api-key'], KEY_AIS);
	else if (flavour === 'express') assert.equal(headers['x-goog-api-key'], KEY_EXPRESS);
	else if (flavour === 'bearer') assert.equal(headers.authorization, `Bearer ${TOKEN_STATIC}`);
	else assert.match(headers.authorization, /^Bearer ya29\.fake-\d+-/);
	if (flavour === 'bearer' || flavour === 'sa') assert.equal(headers['x-goog-api-key'], undefined);
}

function expectPath(flavour, p, method) {
	const want = {
		aistudio: `/v1beta/models/gemini-2.5-flash:${method}`,
		express: `/v1/publishers/google/models/gemini-2.5-flash:${method}`,
		bearer: `/v1/projects/proj-it/locations/us-central1/publishers/google/models/gemini-2.5-flash:${method}`,
		sa: `/v1/projects/sa-proj-it/locations/global/publishers/google/models/gemini-2.5-flash:${method}`,
	}[flavour];
	assert.equal(p, want, `${flavour} path`);
}

async function upstreamSince(seq) {
	return (await fake.requestsSince(seq)).filter((r) => r.path !== '/token');
}

for (const f of FLAVOURS) {
	test(`${f}: plain chat`, { timeout: 30000 }, async () => {
		const seq = await fake.lastSeq();
		const c = await client();
		const r = await c.chat.completions.create({
			model: `${f}-chat`, messages: [{ role: 'system', content: 'Be brief' }, { role: 'user', content: 'Hello there proxy' }],
			temperature: 0.2, max_tokens: 50, user: 'it',
		});
		assert.equal(r.object, 'chat.completion');
		assert.equal(r.model, `${f}-chat`);
		assert.match(r.id, /^chatcmpl-/);
		assert.equal(r.choices[0].message.content, 'Hello from fake google');
		assert.equal(r.choices[0].finish_reason, 'stop');
		assert.equal(r.usage.prompt_tokens, 5);
		assert.equal(r.usage.completion_tokens, 4);
		assert.equal(r.usage.total_tokens, 9);
		const up = await upstreamSince(seq);
		assert.equal(up.length, 1);
		expectPath(f, up[0].path, 'generateContent');
		expectAuth(f, up[0].headers);
		const body = JSON.parse(up[0].body);
		assert.deepEqual(body.systemInstruction, { parts: [{ text: 'Be brief' }] });
		assert.deepEqual(body.contents, [{ role: 'user', parts: [{ text: 'Hello there proxy' }] }]);
		assert.deepEqual(body.generationConfig, { temperature: 0.2, maxOutputTokens: 50 });
		assert.equal(up[0].query.key, undefined, 'no key in the URL');
	});

	test(`${f}: streamed chat with and without usage`, { timeout: 30000 }, async () => {
		const c = await client();
		for (const includeUsage of [false, true]) {
			const seq = await fake.lastSeq();
			const s = await c.chat.completions.create({
				model: `${f}-chat`, messages: [{ role: 'user', content: 'Stream please' }], stream: true,
				...(includeUsage ? { stream_options: { include_usage: true } } : {}),
			});
			const { content, chunks } = await L.collectStream(s);
			assert.equal(content, 'Hello from fake google');
			assert.ok(chunks.length >= 4, 'several chunks');
			assert.equal(chunks[0].choices[0].delta.role, 'assistant');
			assert.ok(chunks.every((ch) => ch.model === `${f}-chat` && ch.object === 'chat.completion.chunk'));
			assert.equal(new Set(chunks.map((ch) => ch.id)).size, 1, 'one id for the whole stream');
			const fin = chunks.filter((ch) => ch.choices.length && ch.choices[0].finish_reason);
			assert.equal(fin.length, 1);
			assert.equal(fin[0].choices[0].finish_reason, 'stop');
			const usage = chunks.filter((ch) => ch.usage);
			if (includeUsage) {
				assert.equal(usage.length, 1);
				assert.deepEqual(usage[0].choices, []);
				assert.equal(usage[0].usage.prompt_tokens, 2);
				assert.equal(usage[0].usage.completion_tokens, 4);
			} else {
				assert.equal(usage.length, 0, 'no usage chunk when not asked');
			}
			const up = await upstreamSince(seq);
			expectPath(f, up[0].path, 'streamGenerateContent');
			assert.equal(up[0].query.alt, 'sse');
		}
	});

	test(`${f}: tool calling round trip with thought signatures`, { timeout: 30000 }, async () => {
		const c = await client();
		const tools = [{
			type: 'function', function: {
				name: 'get_weather', description: 'weather', strict: true,
				parameters: { type: 'object', additionalProperties: false, properties: { city: { type: 'string' }, unit: { type: ['string', 'null'] } }, required: ['city'] },
			},
		}];
		const messages = [{ role: 'user', content: 'Weather in Paris? __fake:tool_call=get_weather' }];
		const r1 = await c.chat.completions.create({ model: `${f}-chat`, messages, tools, tool_choice: 'auto' });
		assert.equal(r1.choices[0].finish_reason, 'tool_calls');
		const tc = r1.choices[0].message.tool_calls;
		assert.equal(tc.length, 1);
		assert.equal(tc[0].function.name, 'get_weather');
		assert.deepEqual(JSON.parse(tc[0].function.arguments), { city: 'Paris' });
		assert.match(tc[0].id, /__thought__c2lnLWZha2UtZ29vZ2xl$/, 'signature carried in the id');
		if (f === 'aistudio') assert.match(tc[0].id, /^fc-\d+__thought__/);
		const seq = await fake.lastSeq();
		messages.push(r1.choices[0].message);
		messages.push({ role: 'tool', tool_call_id: tc[0].id, content: '{"temp_c":21}' });
		const r2 = await c.chat.completions.create({ model: `${f}-chat`, messages, tools });
		assert.equal(r2.choices[0].message.content, 'tool said {"temp_c":21}');
		const up = await upstreamSince(seq);
		const body = JSON.parse(up[0].body);
		const model = body.contents[1];
		assert.equal(model.role, 'model');
		assert.equal(model.parts[0].thoughtSignature, 'c2lnLWZha2UtZ29vZ2xl');
		const fr = body.contents[2].parts[0].functionResponse;
		assert.equal(fr.name, 'get_weather');
		if (f === 'aistudio') assert.match(fr.id, /^fc-\d+$/);
		else assert.equal(fr.id, undefined, 'no id on Vertex function parts');
		const params = body.tools[0].functionDeclarations[0].parameters;
		assert.equal(params.additionalProperties, undefined);
		assert.deepEqual(params.properties.unit, { type: 'string', nullable: true });
	});

	test(`${f}: json schema output`, { timeout: 30000 }, async () => {
		const c = await client();
		const seq = await fake.lastSeq();
		const r = await c.chat.completions.create({
			model: `${f}-chat`, messages: [{ role: 'user', content: 'A person please' }],
			response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: {
				type: 'object', additionalProperties: false, required: ['name', 'age'],
				properties: { name: { type: 'string' }, age: { type: 'integer' } } } } },
		});
		assert.deepEqual(JSON.parse(r.choices[0].message.content), { name: 'x', age: 1 });
		const body = JSON.parse((await upstreamSince(seq))[0].body);
		assert.equal(body.generationConfig.responseMimeType, 'application/json');
		assert.deepEqual(body.generationConfig.responseSchema.propertyOrdering, ['name', 'age']);
		assert.equal(body.generationConfig.responseSchema.additionalProperties, undefined);
	});

	test(`${f}: embeddings (float and the client's default base64)`, { timeout: 30000 }, async () => {
		const c = await client();
		const seq = await fake.lastSeq();
		const r = await c.embeddings.create({ model: `${f}-emb`, input: ['alpha beta', 'gamma'], dimensions: 4 });
		assert.equal(r.data.length, 2);
		assert.deepEqual(r.data.map((d) => d.index), [0, 1]);
		assert.ok(r.data.every((d) => d.embedding.length === 4));
		assert.equal(r.model, `${f}-emb`);
		const rf = await c.embeddings.create({ model: `${f}-emb`, input: 'alpha beta', dimensions: 4, encoding_format: 'float' });
		for (let i = 0; i < 4; i++) assert.ok(Math.abs(rf.data[0].embedding[i] - r.data[0].embedding[i]) < 1e-6, 'same vector');
		const up = await upstreamSince(seq);
		const body = JSON.parse(up[0].body);
		if (f === 'aistudio') {
			assert.equal(up[0].path, '/v1beta/models/text-embedding-004:batchEmbedContents');
			assert.equal(body.requests[1].outputDimensionality, 4);
		} else {
			assert.match(up[0].path, /\/publishers\/google\/models\/text-embedding-004:predict$/);
			assert.deepEqual(body, { instances: [{ content: 'alpha beta' }, { content: 'gamma' }], parameters: { outputDimensionality: 4 } });
			assert.equal(r.usage.prompt_tokens, 3);
		}
	});
}

test('a rejected upstream key is a 502 naming the connection, never the key', { timeout: 30000 }, async () => {
	const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('bad-chat') });
	const e = L.assertOpenAIError(r, { status: 502, code: 'upstream_auth_failed', messageIncludes: 'g-badkey' });
	assert.ok(e.message.includes('API key not valid'));
	L.assertNoSecret(r.text, [KEY_BAD, KEY_AIS], 'error body');
});

test('upstream 429 and 404 are mapped', { timeout: 30000 }, async () => {
	const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('aistudio-chat', 'hi __fake:status=429') });
	L.assertOpenAIError(r, { status: 429, code: 'rate_limit_exceeded' });
	const n = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('missing-chat') });
	L.assertOpenAIError(n, { status: 404, code: 'model_not_found' });
	const u = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('aistudio-chat', 'hi', { logit_bias: { 1: 5 } }) });
	L.assertOpenAIError(u, { status: 400, messageIncludes: 'logit_bias' });
});

test('a stream dropped mid-way ends with an error, not [DONE]', { timeout: 30000 }, async () => {
	const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('express-chat', 'a b c __fake:drop_mid_stream', { stream: true }) });
	assert.equal(r.status, 200);
	assert.ok(!r.text.includes('[DONE]'), r.text.slice(0, 400));
	assert.ok(L.parseSSE(r.text).some((d) => d.includes('"error"')), 'an SSE error event');
});

test('service account: 50 new connections in a burst cost one token exchange', { timeout: 60000 }, async () => {
	const before = await tokenCount();
	const rs = await Promise.all(Array.from({ length: 50 }, () =>
		proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('burst-chat', 'hi'), timeoutMs: 30000 })));
	for (const r of rs) assert.equal(r.status, 200, r.text.slice(0, 300));
	assert.equal(await tokenCount(), before + 1, 'exactly one exchange');
	const files = fs.readdirSync(cacheDir2);
	assert.ok(files.some((n) => n.endsWith('.tok')));
	assert.equal(fs.statSync(cacheDir2).mode & 0o777, 0o700);
	for (const n of files) {
		const text = fs.readFileSync(path.join(cacheDir2, n)).toString('latin1');
		assert.ok(!text.includes('ya29'), `${n} holds no clear token`);
		assert.ok(!text.includes('it-bot'), `${n} holds no clear identity`);
	}
});

test('service account: an expiring token is refreshed', { timeout: 60000 }, async () => {
	await fake.control({ token_ttl: 302 }); // valid 2 s beyond the 5-minute margin
	fs.rmSync(cacheDir, { recursive: true, force: true });
	const ask = () => proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('sa-chat', 'hi') });
	const c0 = await tokenCount();
	assert.equal((await ask()).status, 200);
	assert.equal(await tokenCount(), c0 + 1);
	assert.equal((await ask()).status, 200);
	assert.equal(await tokenCount(), c0 + 1, 'cached');
	await L.sleep(2600);
	assert.equal((await ask()).status, 200);
	assert.equal(await tokenCount(), c0 + 2, 'refreshed');
	await fake.control({ token_ttl: 3599 });
});

test('a token endpoint failure is a clear 502', { timeout: 30000 }, async () => {
	await fake.control({ token_ttl: 3599 });
	// a key the fake cannot verify: the same account signed by another key
	const other = path.join(tmp, 'other.pem');
	execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', other], { stdio: 'ignore' });
	const f = path.join(tmp, 'sa-other.json');
	fs.writeFileSync(f, JSON.stringify({ ...saJSON, private_key: fs.readFileSync(other, 'utf8') }), { mode: 0o600 });
	const h2 = await L.Home.create();
	const conn = (await h2.ok(['connection', 'add', '--name', 'g-sa-wrong', '--provider', 'vertex', '--endpoint', fake.url, '--api-key-file', f, '--option', `token_cache=${path.join(tmp, 'tokens3')}`]))[0];
	const vk = await h2.vkey({ name: 'w', key: VK });
	await h2.assign({ vkey: vk.id, model: await h2.model({ conn, name: 'w-m', remote: 'gemini-2.5-flash' }), alias: 'w' });
	const p2 = await L.startProxy(h2);
	const r = await p2.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('w') });
	L.assertOpenAIError(r, { status: 502, messageIncludes: 'service account token exchange failed: invalid_grant: Invalid JWT Signature.' });
	assert.ok(!r.text.includes('PRIVATE KEY'));
	await p2.stop();
});

test('no credential in the proxy logs', async () => {
	L.assertNoSecret(proxy.logs(), [KEY_AIS, KEY_EXPRESS, TOKEN_STATIC, KEY_BAD, 'BEGIN PRIVATE KEY'], 'proxy logs');
});

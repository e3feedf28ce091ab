// proxy_azure.test.mjs - the proxy in front of Azure OpenAI (classic
// deployments URLs), driven by the official `openai` client (issue 3).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from './lib.mjs';

after(L.stopAll);

const CRED = 'az-upstream-key-4c2a9e71d3b8f6050a1b';
const VK = 'vk-it-azure-9d8c7b6a5f4e3d2c1b0a99887766';
const ALIASES = ['az-chat', 'az-emb', 'az-new', 'az-missing', 'az-v1'];
const DEFAULT_API_VERSION = '2024-05-01-preview';

let fake, home, proxy, vk;

before(async () => {
	fake = await L.startFake('azure', ['--key', CRED, '--deployments', 'dep-chat,dep-emb,dep-new']);
	home = await L.Home.create();
	const conn = await home.connection({ name: 'az-default', provider: 'azure', endpoint: fake.url, apiKey: CRED });
	const connNew = await home.connection({ name: 'az-2024-10', provider: 'azure', endpoint: fake.url, apiKey: CRED, apiVersion: '2024-10-21' });
	const mChat = await home.model({ conn, name: 'az-gpt4o', remote: 'gpt-4o', deployment: 'dep-chat' });
	const mEmb = await home.model({ conn, name: 'az-embed', remote: 'text-embedding-3-small', deployment: 'dep-emb', kind: 'embedding' });
	const mNew = await home.model({ conn: connNew, name: 'az-gpt4o-new', remote: 'gpt-4o', deployment: 'dep-new' });
	const mMissing = await home.model({ conn, name: 'az-missing-dep', remote: 'gpt-4o', deployment: 'dep-missing' });
	// the v1 API form: base URL {resource}/openai/v1 (PROVIDERS.md §b.1)
	const connV1 = await home.connection({ name: 'az-v1', provider: 'azure', endpoint: `${fake.url}/openai/v1`, apiKey: CRED });
	const mV1 = await home.model({ conn: connV1, name: 'az-gpt4o-v1', remote: 'gpt-4o', deployment: 'dep-chat' });
	vk = await home.vkey({ name: 'it-azure', key: VK });
	await home.assign({ vkey: vk.id, model: mV1, alias: 'az-v1' });
	await home.assign({ vkey: vk.id, model: mChat, alias: 'az-chat' });
	await home.assign({ vkey: vk.id, model: mEmb, alias: 'az-emb' });
	await home.assign({ vkey: vk.id, model: mNew, alias: 'az-new' });
	await home.assign({ vkey: vk.id, model: mMissing, alias: 'az-missing' });
	proxy = await L.startProxy(home);
}, { timeout: 60000 });

const bases = () => [['root', proxy.url], ['/v1', proxy.v1URL]];

/* Checks the common Azure upstream request facts. */
function checkUpstream(u, { deployment, op = 'chat/completions', apiVersion = DEFAULT_API_VERSION }) {
	assert.equal(u.method, 'POST');
	assert.equal(u.path, `/openai/deployments/${deployment}/${op}`, 'deployment in the path');
	assert.equal(u.query['api-version'], apiVersion, 'api-version in the query');
	assert.equal(u.headers['api-key'], CRED, 'api-key header carries the credential');
	assert.equal(u.headers.authorization, undefined, 'no Authorization header to Azure');
}

test('non-stream chat (root and /v1): content, alias as model, usage; default api-version, api-key, deployment path', { timeout: 30000 }, async () => {
	for (const [label, baseURL] of bases()) {
		const seq = await fake.lastSeq();
		const client = await L.openaiClient({ apiKey: VK, baseURL });
		const messages = [{ role: 'user', content: 'Hello Azure friend' }];
		const r = await client.chat.completions.create({ model: 'az-chat', messages, max_tokens: 50 });
		assert.equal(r.model, 'az-chat', `${label}: alias shown, not Azure's model name`);
		assert.equal(r.object, 'chat.completion');
		assert.equal(r.choices[0].message.content, 'Hello from fake azure', label);
		assert.equal(r.choices[0].finish_reason, 'stop');
		assert.equal(r.usage.prompt_tokens, 3);
		assert.equal(r.usage.completion_tokens, 4);
		assert.equal(r.usage.total_tokens, 7);
		const up = await fake.requestsSince(seq);
		assert.equal(up.length, 1, `${label}: one upstream request`);
		checkUpstream(up[0], { deployment: 'dep-chat' });
		const body = JSON.parse(up[0].body);
		assert.deepEqual(body.messages, messages);
		assert.equal(body.max_tokens, 50);
		assert.equal(body.stream_options, undefined);
	}
});

test('stream chat on the default api-version: Azure filter chunks do not break the client', { timeout: 30000 }, async () => {
	for (const [label, baseURL] of bases()) {
		const seq = await fake.lastSeq();
		const client = await L.openaiClient({ apiKey: VK, baseURL });
		const s = await client.chat.completions.create({ ...L.chatBody('az-chat', 'stream it'), stream: true });
		const { content, chunks } = await L.collectStream(s);
		assert.equal(content, 'Hello from fake azure', label);
		assert.ok(chunks.some((c) => c.choices.length && c.choices[0].finish_reason === 'stop'), `${label}: a finish chunk`);
		for (const c of chunks) {
			assert.equal(c.object, 'chat.completion.chunk', `${label}: no chunk with Azure's empty object`);
			assert.equal(c.model, 'az-chat', `${label}: alias on every chunk`);
		}
		const up = await fake.requestsSince(seq);
		assert.equal(up.length, 1);
		checkUpstream(up[0], { deployment: 'dep-chat' });
		const body = JSON.parse(up[0].body);
		assert.equal(body.stream, true);
		assert.equal(body.stream_options, undefined, `${DEFAULT_API_VERSION} rejects stream_options: not sent`);
	}
});

test('stream chat raw: every event is a well-formed OpenAI chunk, ends with [DONE]', { timeout: 15000 }, async () => {
	const r = await L.rawRequest(proxy.port, L.buildRequest({
		method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), keepAlive: false,
		body: { ...L.chatBody('az-chat', 'raw azure stream'), stream: true },
	}), { timeoutMs: 10000 });
	assert.equal(r.status, 200, r.text.slice(0, 300));
	const ev = L.parseSSE(r.body);
	assert.equal(ev.at(-1), '[DONE]');
	const json = ev.slice(0, -1).map((e) => JSON.parse(e));
	for (const j of json) {
		assert.equal(j.error, undefined);
		assert.equal(j.object, 'chat.completion.chunk');
		assert.ok(typeof j.id === 'string' && j.id.length > 0, 'no empty id');
		assert.ok(Array.isArray(j.choices));
	}
	assert.equal(json.map((j) => (j.choices[0] && j.choices[0].delta && j.choices[0].delta.content) || '').join(''), 'Hello from fake azure');
});

test('stream with include_usage on the default api-version still works (option not forwarded)', { timeout: 15000 }, async () => {
	const seq = await fake.lastSeq();
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.url });
	const s = await client.chat.completions.create({ ...L.chatBody('az-chat', 'usage please'), stream: true, stream_options: { include_usage: true } });
	const { content } = await L.collectStream(s);
	assert.equal(content, 'Hello from fake azure');
	const up = await fake.requestsSince(seq);
	assert.equal(up.length, 1);
	assert.equal(JSON.parse(up[0].body).stream_options, undefined, 'an api-version that rejects it does not get stream_options');
});

test('connection api-version 2024-10-21: used in the query; usage chunk only when asked', { timeout: 20000 }, async () => {
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.v1URL });
	let seq = await fake.lastSeq();
	const withUsage = await L.collectStream(await client.chat.completions.create({
		...L.chatBody('az-new', 'one two three'), stream: true, stream_options: { include_usage: true },
	}));
	assert.equal(withUsage.content, 'Hello from fake azure');
	const last = withUsage.chunks.at(-1);
	assert.deepEqual(last.choices, []);
	assert.deepEqual({ p: last.usage.prompt_tokens, c: last.usage.completion_tokens, t: last.usage.total_tokens }, { p: 3, c: 4, t: 7 });
	let up = await fake.requestsSince(seq);
	checkUpstream(up[0], { deployment: 'dep-new', apiVersion: '2024-10-21' });
	assert.equal(JSON.parse(up[0].body).stream_options.include_usage, true);

	seq = await fake.lastSeq();
	const noUsage = await L.collectStream(await client.chat.completions.create({ ...L.chatBody('az-new', 'no usage'), stream: true }));
	assert.equal(noUsage.content, 'Hello from fake azure');
	assert.ok(noUsage.chunks.every((c) => !c.usage), 'no usage chunk when not asked');
	assert.ok(noUsage.chunks.every((c) => c.choices.length > 0), 'no empty-choices chunk reaches the client');
	up = await fake.requestsSince(seq);
	assert.equal(JSON.parse(up[0].body).stream_options.include_usage, true, 'proxy asks for usage where the api-version allows');

	const ns = await client.chat.completions.create(L.chatBody('az-new', 'plain'));
	assert.equal(ns.model, 'az-new');
	assert.equal(ns.choices[0].message.content, 'Hello from fake azure');
});

test('v1 API form (endpoint .../openai/v1): deployment as body model, api-key header', { timeout: 15000 }, async () => {
	const seq = await fake.lastSeq();
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.url });
	const r = await client.chat.completions.create(L.chatBody('az-v1', 'hello v1 form'));
	assert.equal(r.model, 'az-v1');
	assert.equal(r.choices[0].message.content, 'Hello from fake azure');
	const s = await L.collectStream(await client.chat.completions.create({ ...L.chatBody('az-v1', 'stream v1'), stream: true }));
	assert.equal(s.content, 'Hello from fake azure');
	assert.ok(s.chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'az-v1'));
	const up = await fake.requestsSince(seq);
	assert.equal(up.length, 2);
	for (const u of up) {
		assert.equal(u.path, '/openai/v1/chat/completions');
		assert.equal(JSON.parse(u.body).model, 'dep-chat', 'deployment name in the body');
		assert.equal(u.headers['api-key'], CRED);
		assert.equal(u.headers.authorization, undefined);
	}
});

test('embeddings: deployment path, api-version, indexes and alias', { timeout: 15000 }, async () => {
	const seq = await fake.lastSeq();
	const client = await L.openaiClient({ apiKey: VK, baseURL: proxy.url });
	const r = await client.embeddings.create({ model: 'az-emb', input: ['one two', 'three'] });
	assert.equal(r.model, 'az-emb');
	assert.deepEqual(r.data.map((d) => d.index), [0, 1]);
	assert.ok(r.data.every((d) => d.embedding.length === 8));
	assert.equal(r.usage.prompt_tokens, 3);
	const up = await fake.requestsSince(seq);
	assert.equal(up.length, 1);
	checkUpstream(up[0], { deployment: 'dep-emb', op: 'embeddings' });
	assert.deepEqual(JSON.parse(up[0].body).input, ['one two', 'three']);
});

test('/v1/models lists exactly this key\'s aliases', { timeout: 15000 }, async () => {
	for (const [label, baseURL] of bases()) {
		const client = await L.openaiClient({ apiKey: VK, baseURL });
		const l = await client.models.list();
		assert.deepEqual(l.data.map((m) => m.id).sort(), [...ALIASES].sort(), label);
	}
});

test('upstream DeploymentNotFound: OpenAI-shaped error, no credential', { timeout: 15000 }, async () => {
	const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('az-missing', 'hi') });
	L.assertOpenAIError(r, { status: [404, 502] }, 'missing deployment');
	L.assertNoSecret(r.text, [CRED], 'error body');
	const up = (await fake.requests()).at(-1);
	assert.equal(up.path, '/openai/deployments/dep-missing/chat/completions');
});

test('upstream Azure 429 reaches the client as 429 (OpenAI shape)', { timeout: 15000 }, async () => {
	const r = await proxy.request({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body: L.chatBody('az-chat', 'hi __fake:status=429') });
	L.assertOpenAIError(r, { status: 429 }, 'azure 429');
	await proxy.assertHealthy('azure 429');
});

test('secrets: vkey never upstream, credential never to the client or the log', { timeout: 15000 }, async () => {
	const c = await L.RawConn.open(proxy.port);
	const seen = [];
	try {
		for (const body of [
			L.chatBody('az-chat', 'hi'),
			{ ...L.chatBody('az-chat', 'hi'), stream: true },
			{ ...L.chatBody('az-new', 'hi'), stream: true, stream_options: { include_usage: true } },
			L.chatBody('az-missing', 'hi'),
			L.chatBody('az-chat', 'hi __fake:status=500'),
		]) {
			if (c.closed) break;
			seen.push((await c.request(L.buildRequest({ method: 'POST', path: '/v1/chat/completions', headers: L.bearer(VK), body }))).raw);
		}
	} finally {
		c.destroy();
	}
	assert.ok(seen.length >= 3);
	L.assertNoSecret(seen.join('\n'), [CRED], 'client responses');
	const all = await fake.requests();
	assert.ok(all.length >= 5);
	for (const u of all) L.assertNoSecret(JSON.stringify(u.rawHeaders) + u.url + u.body, [VK], `upstream request #${u.seq}`);
	L.assertNoSecret(proxy.logs(), [CRED, VK], 'proxy stderr');
	const line = proxy.logs().split('\n').find((l) => l.includes(vk.id) && l.includes('az-chat'));
	assert.ok(line, 'a request log line names the vkey id and alias');
	assert.match(line, /azure/);
});

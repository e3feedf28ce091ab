// common.mjs - shared machinery for the fake provider servers (Node 20, no deps).
//
// A fake is started as `node tests/fakes/NAME.mjs --port 0 [...]`; it listens on
// 127.0.0.1 and prints one JSON line {"port":N} on stdout once listening.
//
// Every fake gets, from createFake():
//   GET  /__requests  JSON array of every recorded request
//                     {seq, method, path, query, url, headers, rawHeaders, body,
//                      completed, aborted}
//                     (body is the text; completed/aborted are set when the
//                      response finished or the client went away first)
//   POST /__reset     clears the record and the global switches
//   POST /__control   JSON object: switches applied to every request until reset
//                     (same names as the directives below, e.g. {"status":500})
//
// Per-request switches ("directives") are written in the text of the LAST user
// message (or, for embeddings, the last input string):
//   __fake:status=429            answer with the provider's rate-limit error
//   __fake:status=500            answer with the provider's server error
//   __fake:status=N              any other status: a provider-shaped error
//   __fake:delay_first_byte_ms=N wait N ms before sending the status line
//   __fake:chunk_delay_ms=N      wait N ms between SSE events
//   __fake:drop_mid_stream       send part of the answer, then destroy the socket
//   __fake:reply=TEXT            reply TEXT (one token) or __fake:reply="a b c"
//   __fake:tool_call=NAME        answer with a call of tool NAME
// Switch values given to /__control use the same names; a directive in the
// request wins over a global switch.
//
// Usage is deterministic: prompt_tokens = whitespace-separated words across all
// message texts; completion_tokens = words in the reply.

import http from 'node:http';
import { URL } from 'node:url';

/* Parses `--name value` / `--flag` pairs into an object seeded with defaults.
 * Keys are converted from kebab-case to camelCase (--path-prefix -> pathPrefix).
 * Unknown flags are kept too, so a fake can read its own options. */
export function parseArgs(argv, defaults = {}) {
	const out = { ...defaults };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		if (!a.startsWith('--')) continue;
		let k = a.slice(2), v;
		const eq = k.indexOf('=');
		if (eq >= 0) { v = k.slice(eq + 1); k = k.slice(0, eq); }
		else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) v = argv[++i];
		else v = true;
		k = k.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
		out[k] = v;
	}
	if (out.port !== undefined) out.port = Number(out.port);
	return out;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Number of whitespace-separated words in a string. */
export function wordCount(s) {
	if (typeof s !== 'string') return 0;
	const t = s.trim();
	return t ? t.split(/\s+/).length : 0;
}

/* The text of one OpenAI message content: a string, or the concatenation (with
 * spaces) of the text parts of an array; anything else gives "". */
export function contentText(content) {
	if (typeof content === 'string') return content;
	if (Array.isArray(content)) {
		return content
			.map((p) => (p && typeof p === 'object' && typeof p.text === 'string' ? p.text : ''))
			.filter(Boolean)
			.join(' ');
	}
	return '';
}

/* prompt_tokens for a list of OpenAI messages: words across all message texts. */
export function messagesWordCount(messages) {
	if (!Array.isArray(messages)) return 0;
	let n = 0;
	for (const m of messages) if (m && typeof m === 'object') n += wordCount(contentText(m.content));
	return n;
}

/* Text of the last message whose role is "user" ("" when none). */
export function lastUserText(messages) {
	if (!Array.isArray(messages)) return '';
	for (let i = messages.length - 1; i >= 0; i--) {
		const m = messages[i];
		if (m && typeof m === 'object' && m.role === 'user') return contentText(m.content);
	}
	return '';
}

/* Extracts `__fake:key[=value]` directives from a text.  A value is either a
 * double-quoted string or a run of non-space characters; a bare key is true.
 * Numeric values become numbers. */
export function parseDirectives(text) {
	const out = {};
	if (typeof text !== 'string') return out;
	const re = /__fake:([a-z_]+)(?:=(?:"([^"]*)"|(\S+)))?/g;
	let m;
	while ((m = re.exec(text)) !== null) {
		let v = m[2] !== undefined ? m[2] : m[3] !== undefined ? m[3] : true;
		if (typeof v === 'string' && m[2] === undefined && /^-?\d+$/.test(v)) v = Number(v);
		out[m[1]] = v;
	}
	return out;
}

/* Writes a JSON response (with content-length) unless the socket is gone. */
export function sendJSON(res, status, obj, headers = {}) {
	if (res.destroyed || res.writableEnded) return;
	const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
	res.writeHead(status, {
		'content-type': 'application/json',
		'content-length': Buffer.byteLength(body),
		...headers,
	});
	res.end(body);
}

/* Starts an SSE response (status 200, no content-length: chunked). */
export function sseStart(res, headers = {}) {
	res.writeHead(200, {
		'content-type': 'text/event-stream; charset=utf-8',
		'cache-control': 'no-cache',
		...headers,
	});
	if (res.flushHeaders) res.flushHeaders();
}

/* Writes one SSE event `data: <json or string>` + blank line; eol "\r\n" for
 * Gemini-style framing.  Returns false when the client is gone. */
export function sseSend(res, data, eol = '\n') {
	if (res.destroyed || res.writableEnded) return false;
	const s = typeof data === 'string' ? data : JSON.stringify(data);
	res.write(`data: ${s}${eol}${eol}`);
	return true;
}

/* Destroys the underlying socket without finishing the HTTP message. */
export function dropSocket(res) {
	const sock = res.socket;
	if (sock) sock.destroy();
	else res.destroy();
}

/* Sends a partial JSON body (declared length larger than what is sent), then
 * drops the socket: the non-stream form of drop_mid_stream. */
export function sendTruncatedJSON(res, obj) {
	const body = JSON.stringify(obj);
	res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
	res.write(body.slice(0, Math.max(1, Math.floor(body.length / 2))));
	setTimeout(() => dropSocket(res), 50);
}

/* Deterministic pseudo-random vector of `dim` floats in [-1,1] for a text. */
export function fakeVector(text, dim = 8) {
	let h = 2166136261 >>> 0;
	for (const c of Buffer.from(String(text))) { h ^= c; h = Math.imul(h, 16777619) >>> 0; }
	const v = [];
	for (let i = 0; i < dim; i++) {
		h ^= h << 13; h >>>= 0; h ^= h >>> 17; h ^= h << 5; h >>>= 0;
		v.push(Math.round(((h % 20001) / 10000 - 1) * 1e6) / 1e6);
	}
	return v;
}

/* A float vector as OpenAI's base64 encoding (little-endian float32). */
export function vectorBase64(v) {
	const f = new Float32Array(v);
	return Buffer.from(f.buffer).toString('base64');
}

/* A random-looking id with a prefix (chatcmpl-..., call_...). */
let idCounter = 0;
export function fakeId(prefix) {
	idCounter++;
	return `${prefix}${Date.now().toString(36)}${idCounter.toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}

/* Creates, starts and returns the HTTP server of a fake.
 *   name     the fake's name (used in the default reply)
 *   port     0 for any free port
 *   handle   async (ctx) => void, answers ctx.res.  ctx = {req, res, method,
 *            path, query (URLSearchParams), headers, bodyText, json (parsed
 *            body or undefined), jsonError (true if the body was not JSON),
 *            record (the recorded entry), control (global switches),
 *            switches(textForDirectives) -> merged switches, name}
 * The /__ endpoints are handled here and not recorded.  Prints {"port":N}. */
export function createFake({ name, port = 0, handle }) {
	let requests = [];
	let control = {};
	let seq = 0;
	const server = http.createServer((req, res) => {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('error', () => {});
		req.on('end', async () => {
			const bodyText = Buffer.concat(chunks).toString('utf8');
			const u = new URL(req.url, 'http://127.0.0.1');
			const path = u.pathname;
			if (path === '/__requests' && req.method === 'GET') return sendJSON(res, 200, requests);
			if (path === '/__reset' && req.method === 'POST') {
				requests = [];
				control = {};
				return sendJSON(res, 200, { ok: true });
			}
			if (path === '/__control' && req.method === 'POST') {
				try {
					const obj = JSON.parse(bodyText || '{}');
					if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error('not an object');
					control = { ...control, ...obj };
					return sendJSON(res, 200, { ok: true, control });
				} catch (e) {
					return sendJSON(res, 400, { error: String(e.message || e) });
				}
			}
			const record = {
				seq: ++seq,
				method: req.method,
				path,
				query: Object.fromEntries(u.searchParams.entries()),
				url: req.url,
				headers: { ...req.headers },
				rawHeaders: req.rawHeaders.slice(),
				body: bodyText,
				completed: false,
				aborted: false,
			};
			requests.push(record);
			res.on('finish', () => { record.completed = true; });
			res.on('close', () => { if (!record.completed) record.aborted = true; });
			let json, jsonError = false;
			if (bodyText.length) {
				try { json = JSON.parse(bodyText); } catch { jsonError = true; }
			}
			const ctx = {
				req, res, method: req.method, path, query: u.searchParams, headers: req.headers,
				bodyText, json, jsonError, record, control, name,
				switches: (text) => ({ ...control, ...parseDirectives(text) }),
			};
			try {
				await handle(ctx);
			} catch (e) {
				process.stderr.write(`fake ${name}: handler error: ${e && e.stack || e}\n`);
				if (!res.headersSent) sendJSON(res, 500, { error: { message: 'fake internal error' } });
				else dropSocket(res);
			}
		});
	});
	server.keepAliveTimeout = 30000;
	server.headersTimeout = 35000;
	server.requestTimeout = 0;
	server.listen(port, '127.0.0.1', () => {
		process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
	});
	const stop = () => { server.close(); process.exit(0); };
	// Exit when orphaned (the test runner that started us died without
	// stopping us), so no fake outlives its tests.
	const parent = process.ppid;
	setInterval(() => { if (process.ppid !== parent) stop(); }, 1000).unref();
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
	return server;
}

/* Applies delay_first_byte_ms from switches (await before writing anything). */
export async function firstByteDelay(sw) {
	const d = Number(sw.delay_first_byte_ms || 0);
	if (d > 0) await sleep(d);
}

/* The reply text for a request: the reply switch, else "Hello from fake NAME". */
export function replyText(sw, name) {
	return typeof sw.reply === 'string' ? sw.reply : sw.reply !== undefined ? String(sw.reply) : `Hello from fake ${name}`;
}

/* Splits a reply into stream deltas, one word each: "a b c" -> ["a", " b", " c"]. */
export function wordDeltas(text) {
	const parts = text.match(/\s*\S+/g);
	return parts && parts.length ? parts : [text];
}

// ---------------------------------------------------------------------------
// OpenAI-shaped answers, shared by the OpenAI and Azure fakes.

export const EMPTY_USAGE_DETAILS = {
	prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
	completion_tokens_details: {
		reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0,
	},
};

/* The tool-call arguments the fakes answer with (a JSON string). */
export const TOOL_ARGS = '{"location": "Paris"}';

/* Answers a validated chat request in OpenAI shape.
 *   ctx   from createFake; ctx.json is the request body (an object)
 *   opts  { sw: switches, model: shown model (default body.model),
 *           errorFor(status) -> [status, body, headers],
 *           headers: extra response headers,
 *           decorateResponse(obj) -> obj      (non-stream, e.g. Azure filters)
 *           decorateChunk(chunk, kind) -> chunk (kind: role|content|tool|finish|usage)
 *           streamPrefix: [events before the first chunk]
 *           beforeFinish: [events before the finish chunk]
 *           allowUsage: include the usage chunk when asked (default true) }
 * Events in streamPrefix/beforeFinish are objects sent verbatim. */
export async function answerChat(ctx, opts) {
	const { res } = ctx;
	const body = ctx.json;
	const sw = opts.sw || {};
	const model = opts.model !== undefined ? opts.model : body.model;
	await firstByteDelay(sw);
	if (res.destroyed) return;
	const st = Number(sw.status || 200);
	if (st !== 200) {
		const [s, b, h] = opts.errorFor(st);
		return sendJSON(res, s, b, h || {});
	}
	const id = fakeId('chatcmpl-');
	const created = Math.floor(Date.now() / 1000);
	const promptTokens = messagesWordCount(body.messages);
	const tool = typeof sw.tool_call === 'string' ? sw.tool_call : null;
	const reply = replyText(sw, ctx.name);
	const completionTokens = tool ? wordCount(TOOL_ARGS) : wordCount(reply);
	const usage = {
		prompt_tokens: promptTokens,
		completion_tokens: completionTokens,
		total_tokens: promptTokens + completionTokens,
		...EMPTY_USAGE_DETAILS,
	};
	const callId = fakeId('call_');
	const decorateChunk = opts.decorateChunk || ((c) => c);

	if (body.stream !== true) {
		const message = tool
			? {
				role: 'assistant', content: null, refusal: null, annotations: [],
				tool_calls: [{ id: callId, type: 'function', function: { name: tool, arguments: TOOL_ARGS } }],
			}
			: { role: 'assistant', content: reply, refusal: null, annotations: [] };
		let obj = {
			id, object: 'chat.completion', created, model,
			choices: [{ index: 0, message, logprobs: null, finish_reason: tool ? 'tool_calls' : 'stop' }],
			usage, service_tier: 'default', system_fingerprint: 'fp_fake0001',
		};
		if (opts.decorateResponse) obj = opts.decorateResponse(obj);
		if (sw.drop_mid_stream) return sendTruncatedJSON(res, obj);
		return sendJSON(res, 200, obj, opts.headers || {});
	}

	const includeUsage = !!(body.stream_options && body.stream_options.include_usage === true) &&
		opts.allowUsage !== false;
	const chunk = (choices, kind, extra = {}) => decorateChunk({
		id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_fake0001',
		choices, ...(includeUsage ? { usage: null } : {}), ...extra,
	}, kind);
	const ch = (delta, finish = null) => ({ index: 0, delta, logprobs: null, finish_reason: finish });
	const events = [];
	for (const e of opts.streamPrefix || []) events.push({ ev: e, content: false });
	if (tool) {
		const half = Math.floor(TOOL_ARGS.length / 2);
		events.push({ ev: chunk([ch({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: callId, type: 'function', function: { name: tool, arguments: '' } }] })], 'role'), content: true });
		events.push({ ev: chunk([ch({ tool_calls: [{ index: 0, function: { arguments: TOOL_ARGS.slice(0, half) } }] })], 'tool'), content: true });
		events.push({ ev: chunk([ch({ tool_calls: [{ index: 0, function: { arguments: TOOL_ARGS.slice(half) } }] })], 'tool'), content: true });
	} else {
		events.push({ ev: chunk([ch({ role: 'assistant', content: '' })], 'role'), content: true });
		for (const w of wordDeltas(reply)) events.push({ ev: chunk([ch({ content: w })], 'content'), content: true });
	}
	for (const e of opts.beforeFinish || []) events.push({ ev: e, content: false });
	events.push({ ev: chunk([ch({}, tool ? 'tool_calls' : 'stop')], 'finish'), content: true });
	if (includeUsage) events.push({ ev: chunk([], 'usage', { usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } }), content: true });
	events.push({ ev: '[DONE]', content: false });

	sseStart(res, opts.headers || {});
	const gap = Number(sw.chunk_delay_ms || 0);
	let contentSent = 0;
	for (const e of events) {
		if (!sseSend(res, e.ev)) return;
		if (e.content) contentSent++;
		if (sw.drop_mid_stream && contentSent >= 2) {
			await sleep(50);
			return dropSocket(res);
		}
		if (gap > 0) await sleep(gap);
	}
	res.end();
}

/* Answers a validated embeddings request in OpenAI shape.
 *   opts { sw, model, errorFor, headers } */
export async function answerEmbeddings(ctx, opts) {
	const { res } = ctx;
	const body = ctx.json;
	const sw = opts.sw || {};
	await firstByteDelay(sw);
	if (res.destroyed) return;
	const st = Number(sw.status || 200);
	if (st !== 200) {
		const [s, b, h] = opts.errorFor(st);
		return sendJSON(res, s, b, h || {});
	}
	const inputs = embeddingInputs(body.input);
	const dim = Number.isInteger(body.dimensions) && body.dimensions > 0 ? Math.min(body.dimensions, 64) : 8;
	const b64 = body.encoding_format === 'base64';
	let tokens = 0;
	const data = inputs.map((inp, index) => {
		const text = typeof inp === 'string' ? inp : JSON.stringify(inp);
		tokens += typeof inp === 'string' ? wordCount(inp) : inp.length;
		const v = fakeVector(text, dim);
		return { object: 'embedding', index, embedding: b64 ? vectorBase64(v) : v };
	});
	const obj = {
		object: 'list', data,
		model: opts.model !== undefined ? opts.model : body.model,
		usage: { prompt_tokens: tokens, total_tokens: tokens },
	};
	if (sw.drop_mid_stream) return sendTruncatedJSON(res, obj);
	return sendJSON(res, 200, obj, opts.headers || {});
}

/* The list of inputs of an embeddings request: strings or token arrays. */
export function embeddingInputs(input) {
	if (typeof input === 'string') return [input];
	if (Array.isArray(input)) {
		if (input.length && input.every((x) => Number.isInteger(x))) return [input];
		return input;
	}
	return [];
}

/* The text used for directives in an embeddings request: the last string input. */
export function embeddingDirectiveText(input) {
	const l = embeddingInputs(input).filter((x) => typeof x === 'string');
	return l.length ? l[l.length - 1] : '';
}

/* Checks an embeddings `input`: returns an error message or null. */
export function embeddingInputError(input) {
	if (input === undefined) return "Missing required parameter: 'input'.";
	if (typeof input === 'string') return input.length ? null : "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";
	if (Array.isArray(input) && input.length >= 1 && input.length <= 2048) {
		const okStr = input.every((x) => typeof x === 'string' && x.length);
		const okInt = input.every((x) => Number.isInteger(x));
		const okArr = input.every((x) => Array.isArray(x) && x.length && x.every((y) => Number.isInteger(y)));
		if (okStr || okInt || okArr) return null;
	}
	return "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";
}

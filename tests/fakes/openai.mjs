// openai.mjs - fake OpenAI (or OpenAI-compatible) server for tests.
//
//   node tests/fakes/openai.mjs --port 0 [--key sk-test-openai]
//        [--path-prefix /v1] [--models gpt-4o-mini,gpt-4o,text-embedding-3-small]
//
// Routes (under the path prefix, default /v1; `--path-prefix /openai/v1` poses
// as a Bedrock-style OpenAI-compatible base):
//   POST {prefix}/chat/completions   JSON or SSE (stream:true)
//   POST {prefix}/embeddings
//   GET  {prefix}/models, GET {prefix}/models/{id}
// Checks what OpenAI checks: `Authorization: Bearer <key>` (401 invalid_api_key
// otherwise), the path (404 Invalid URL), a JSON object body, `model`,
// `messages` (non-empty array of messages with a known role), unknown top-level
// fields (400 "Unrecognized request argument supplied: X", the allowed set is
// read from the OpenAI schema subset at start), `stream_options` without
// `stream:true`.  Directives and /__requests, /__reset, /__control: common.mjs.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
	parseArgs, createFake, sendJSON, answerChat, answerEmbeddings, lastUserText,
	embeddingDirectiveText, embeddingInputError,
} from './common.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = parseArgs(process.argv.slice(2), {
	port: 0,
	key: 'sk-test-openai',
	pathPrefix: '/v1',
	models: 'gpt-4o-mini,gpt-4o,text-embedding-3-small',
	spec: '',
});

/* Property names of a schema, following $ref and allOf. */
function schemaProps(schemas, s, seen = new Set()) {
	const out = new Set();
	if (!s || typeof s !== 'object') return out;
	if (s.$ref) {
		const n = s.$ref.split('/').pop();
		if (!seen.has(n)) { seen.add(n); for (const p of schemaProps(schemas, schemas[n], seen)) out.add(p); }
	}
	for (const k of Object.keys(s.properties || {})) out.add(k);
	for (const sub of s.allOf || []) for (const p of schemaProps(schemas, sub, seen)) out.add(p);
	return out;
}

/* Finds the OpenAI schema subset: --spec, $OPENAI_SPEC_SUBSET, then known places. */
function loadAllowed() {
	const candidates = [
		args.spec, process.env.OPENAI_SPEC_SUBSET,
		path.join(here, 'openai-chat-embeddings-models.subset.json'),
		path.resolve(here, '../../../shared/reference/specs/openai-chat-embeddings-models.subset.json'),
		'/work/shared/reference/specs/openai-chat-embeddings-models.subset.json',
	].filter(Boolean);
	for (const f of candidates) {
		try {
			const d = JSON.parse(fs.readFileSync(f, 'utf8'));
			const schemas = d.components.schemas;
			const chat = schemaProps(schemas, schemas.CreateChatCompletionRequest);
			const emb = schemaProps(schemas, schemas.CreateEmbeddingRequest);
			if (chat.has('messages') && emb.has('input')) return { chat, emb, from: f };
		} catch { /* try the next one */ }
	}
	// Fallback: the property names of the schema at commit f85dbe22 (PROVIDERS.md).
	process.stderr.write('fake openai: schema subset not found, using built-in field list\n');
	return {
		chat: new Set(['audio', 'frequency_penalty', 'function_call', 'functions', 'logit_bias', 'logprobs',
			'max_completion_tokens', 'max_tokens', 'messages', 'metadata', 'modalities', 'model', 'moderation', 'n',
			'parallel_tool_calls', 'prediction', 'presence_penalty', 'prompt_cache_key', 'prompt_cache_options',
			'prompt_cache_retention', 'reasoning_effort', 'response_format', 'safety_identifier', 'seed',
			'service_tier', 'stop', 'store', 'stream', 'stream_options', 'temperature', 'tool_choice', 'tools',
			'top_logprobs', 'top_p', 'user', 'verbosity', 'web_search_options']),
		emb: new Set(['dimensions', 'encoding_format', 'input', 'model', 'user']),
		from: 'builtin',
	};
}
const allowed = loadAllowed();

let prefix = String(args.pathPrefix || '');
if (prefix && !prefix.startsWith('/')) prefix = '/' + prefix;
prefix = prefix.replace(/\/+$/, '');
const modelIds = String(args.models).split(',').filter(Boolean);
const ROLES = ['system', 'assistant', 'user', 'function', 'tool', 'developer'];

/* OpenAI error body. */
const oaiErr = (message, type = 'invalid_request_error', param = null, code = null) =>
	({ error: { message, type, param, code } });

/* Masks a key the way OpenAI's 401 message does (first 8, stars, last 4). */
function maskKey(k) {
	if (k.length <= 12) return k.slice(0, 3) + '*'.repeat(Math.max(0, k.length - 3));
	return k.slice(0, 8) + '*'.repeat(k.length - 12) + k.slice(-4);
}

/* [status, body, headers] of the error a switch status asks for. */
function errorFor(status) {
	if (status === 429) {
		return [429, oaiErr('Rate limit reached for gpt-4o-mini in organization org-fake on tokens per min (TPM): Limit 30000, Used 30000, Requested 120. Please try again in 1s. Visit https://platform.openai.com/account/rate-limits to learn more.', 'tokens', null, 'rate_limit_exceeded'), {
			'retry-after': '1',
			'x-ratelimit-limit-requests': '5000',
			'x-ratelimit-remaining-requests': '4999',
			'x-ratelimit-reset-requests': '12ms',
			'x-ratelimit-limit-tokens': '30000',
			'x-ratelimit-remaining-tokens': '0',
			'x-ratelimit-reset-tokens': '1s',
		}];
	}
	if (status >= 500) {
		return [status, oaiErr('The server had an error while processing your request. Sorry about that!', 'server_error'), {}];
	}
	if (status === 401) return [401, oaiErr('Incorrect API key provided: sk-fake************1234. You can find your API key at https://platform.openai.com/account/api-keys.', 'invalid_request_error', null, 'invalid_api_key'), {}];
	if (status === 404) return [404, oaiErr('The model `fake` does not exist or you do not have access to it.', 'invalid_request_error', null, 'model_not_found'), {}];
	return [status, oaiErr(`Fake error with status ${status}.`, 'invalid_request_error'), {}];
}

/* Checks `Authorization: Bearer <key>`; answers 401 and returns false if wrong. */
function checkAuth(ctx) {
	const h = ctx.headers.authorization;
	if (h === undefined) {
		sendJSON(ctx.res, 401, oaiErr("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys."));
		return false;
	}
	const m = /^Bearer (.+)$/.exec(h);
	if (!m || m[1] !== args.key) {
		const given = m ? m[1] : h;
		sendJSON(ctx.res, 401, oaiErr(`Incorrect API key provided: ${maskKey(given)}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', null, 'invalid_api_key'));
		return false;
	}
	return true;
}

/* Common body checks: a JSON object without unknown fields.  Answers and
 * returns false on failure. */
function checkBody(ctx, allowedSet) {
	if (ctx.jsonError || ctx.json === undefined) {
		sendJSON(ctx.res, 400, oaiErr("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"));
		return false;
	}
	const b = ctx.json;
	if (!b || typeof b !== 'object' || Array.isArray(b)) {
		sendJSON(ctx.res, 400, oaiErr(`Invalid type for request body: expected an object, but got ${Array.isArray(b) ? 'an array' : typeof b} instead.`, 'invalid_request_error', null, 'invalid_type'));
		return false;
	}
	const unknown = Object.keys(b).filter((k) => !allowedSet.has(k));
	if (unknown.length === 1) {
		sendJSON(ctx.res, 400, oaiErr(`Unrecognized request argument supplied: ${unknown[0]}`));
		return false;
	}
	if (unknown.length > 1) {
		sendJSON(ctx.res, 400, oaiErr(`Unrecognized request arguments supplied: ${unknown.join(', ')}`));
		return false;
	}
	if (b.model === undefined || b.model === null || b.model === '') {
		sendJSON(ctx.res, 400, oaiErr('you must provide a model parameter'));
		return false;
	}
	if (typeof b.model !== 'string') {
		sendJSON(ctx.res, 400, oaiErr(`Invalid type for 'model': expected a string, but got ${typeof b.model} instead.`, 'invalid_request_error', 'model', 'invalid_type'));
		return false;
	}
	return true;
}

async function chat(ctx) {
	if (!checkBody(ctx, allowed.chat)) return;
	const b = ctx.json;
	if (b.messages === undefined) {
		return sendJSON(ctx.res, 400, oaiErr("Missing required parameter: 'messages'.", 'invalid_request_error', 'messages', 'missing_required_parameter'));
	}
	if (!Array.isArray(b.messages)) {
		return sendJSON(ctx.res, 400, oaiErr(`Invalid type for 'messages': expected an array, but got ${typeof b.messages} instead.`, 'invalid_request_error', 'messages', 'invalid_type'));
	}
	if (b.messages.length === 0) {
		return sendJSON(ctx.res, 400, oaiErr("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", 'invalid_request_error', 'messages', 'empty_array'));
	}
	for (let i = 0; i < b.messages.length; i++) {
		const m = b.messages[i];
		if (!m || typeof m !== 'object' || Array.isArray(m)) {
			return sendJSON(ctx.res, 400, oaiErr(`Invalid type for 'messages[${i}]': expected an object, but got ${typeof m} instead.`, 'invalid_request_error', `messages[${i}]`, 'invalid_type'));
		}
		if (!ROLES.includes(m.role)) {
			return sendJSON(ctx.res, 400, oaiErr(`Invalid value: '${m.role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`, 'invalid_request_error', `messages[${i}].role`, 'invalid_value'));
		}
	}
	if (b.stream !== undefined && typeof b.stream !== 'boolean' && b.stream !== null) {
		return sendJSON(ctx.res, 400, oaiErr(`Invalid type for 'stream': expected a boolean, but got ${typeof b.stream} instead.`, 'invalid_request_error', 'stream', 'invalid_type'));
	}
	if (b.stream_options !== undefined && b.stream_options !== null && b.stream !== true) {
		return sendJSON(ctx.res, 400, oaiErr("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'invalid_request_error', 'stream_options', null));
	}
	const sw = ctx.switches(lastUserText(b.messages));
	return answerChat(ctx, { sw, errorFor, headers: { 'x-request-id': 'req_fake' } });
}

async function embeddings(ctx) {
	if (!checkBody(ctx, allowed.emb)) return;
	const b = ctx.json;
	const e = embeddingInputError(b.input);
	if (e) return sendJSON(ctx.res, 400, oaiErr(e, 'invalid_request_error', 'input', null));
	if (b.encoding_format !== undefined && b.encoding_format !== 'float' && b.encoding_format !== 'base64') {
		return sendJSON(ctx.res, 400, oaiErr(`Invalid value: '${b.encoding_format}'. Supported values are: 'float' and 'base64'.`, 'invalid_request_error', 'encoding_format', 'invalid_value'));
	}
	const sw = ctx.switches(embeddingDirectiveText(b.input));
	return answerEmbeddings(ctx, { sw, errorFor, headers: { 'x-request-id': 'req_fake' } });
}

const modelObj = (id) => ({ id, object: 'model', created: 1686935002, owned_by: 'openai' });

createFake({
	name: 'openai',
	port: args.port,
	async handle(ctx) {
		const p = ctx.path;
		const m = ctx.method;
		let route = null;
		if (m === 'POST' && p === `${prefix}/chat/completions`) route = chat;
		else if (m === 'POST' && p === `${prefix}/embeddings`) route = embeddings;
		else if (m === 'GET' && p === `${prefix}/models`) {
			route = async (c) => sendJSON(c.res, 200, { object: 'list', data: modelIds.map(modelObj) });
		} else if (m === 'GET' && p.startsWith(`${prefix}/models/`)) {
			route = async (c) => {
				const id = decodeURIComponent(p.slice(prefix.length + '/models/'.length));
				if (modelIds.includes(id)) return sendJSON(c.res, 200, modelObj(id));
				return sendJSON(c.res, 404, oaiErr(`The model '${id}' does not exist`, 'invalid_request_error', 'model', 'model_not_found'));
			};
		}
		if (!route) {
			return sendJSON(ctx.res, 404, oaiErr(`Invalid URL (${m} ${p})`));
		}
		if (!checkAuth(ctx)) return;
		return route(ctx);
	},
});

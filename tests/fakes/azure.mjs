// azure.mjs - fake Azure OpenAI server for tests.
//
//   node tests/fakes/azure.mjs --port 0 [--key az-test-key]
//        [--deployments dep-1,dep-emb] [--model-name gpt-4o-2024-08-06]
//        [--embedding-model-name text-embedding-3-small]
//
// Routes:
//   POST /openai/deployments/{deployment}/chat/completions?api-version=V
//   POST /openai/deployments/{deployment}/embeddings?api-version=V
//   POST /openai/v1/chat/completions, /openai/v1/embeddings (body model =
//        deployment name, api-version optional), GET /openai/v1/models
// Checks what Azure checks:
//   - wrong path, or a classic path without (or with a malformed) api-version
//     -> 404 {"error":{"code":"404","message":"Resource not found"}}
//   - `api-key: <key>` missing or wrong (an Authorization header does not
//     count) -> 401 {"error":{"code":"401","message":"Access denied ..."}}
//   - deployment not in --deployments -> 404 DeploymentNotFound
//   - body: JSON object; chat needs a non-empty `messages` array; v1 needs `model`
//   - `stream_options` on an api-version older than 2024-09-01-preview -> 400
//     "Unrecognized request argument supplied: stream_options"; without
//     stream:true -> 400 as OpenAI.
// Answers like Azure: OpenAI shape plus prompt_filter_results and per-choice
// content_filter_results; `model` is the underlying model name (not the
// deployment); streams begin with the empty-choices prompt_filter_results chunk
// and carry one async-filter chunk (no delta) before the finish chunk.

import {
	parseArgs, createFake, sendJSON, answerChat, answerEmbeddings, lastUserText,
	embeddingDirectiveText, embeddingInputError,
} from './common.mjs';

const args = parseArgs(process.argv.slice(2), {
	port: 0,
	key: 'az-test-key',
	deployments: 'dep-1,dep-emb',
	modelName: 'gpt-4o-2024-08-06',
	embeddingModelName: 'text-embedding-3-small',
});
const deployments = String(args.deployments).split(',').map((s) => s.trim()).filter(Boolean);

// Verbatim bodies and chunks (reference/specs/fixtures/azure_errors_and_stream.json).
const E401 = { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.' } };
const E404 = { error: { code: '404', message: 'Resource not found' } };
const E404_DEP = { error: { code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.' } };
const E429 = { error: { code: '429', message: 'Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-08-01-preview have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 86400 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.' } };
const SAFE = { filtered: false, severity: 'safe' };
const PROMPT_FILTER_CHUNK = { id: '', choices: [], created: 0, model: '', object: '', system_fingerprint: null, prompt_filter_results: [{ prompt_index: 0, content_filter_results: { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE } }] };
const ASYNC_FILTER_CHUNK = { id: '', choices: [{ finish_reason: null, index: 0, content_filter_offsets: { check_offset: 3329, start_offset: 3329, end_offset: 3438 }, content_filter_results: { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE } }], created: 0, model: '', object: '' };
const CHOICE_FILTERS = { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE, protected_material_text: { filtered: false, detected: false }, protected_material_code: { filtered: false, detected: false } };
const PROMPT_FILTERS = [{ prompt_index: 0, content_filter_results: { hate: SAFE, jailbreak: { filtered: false, detected: false }, self_harm: SAFE, sexual: SAFE, violence: SAFE } }];

const oaiErr = (message, type = 'invalid_request_error', param = null, code = null) =>
	({ error: { message, type, param, code } });

function errorFor(status) {
	if (status === 429) return [429, E429, { 'retry-after': '1', 'x-ratelimit-remaining-requests': '0', 'x-ms-region': 'Fake Region', 'apim-request-id': 'fake-apim' }];
	if (status >= 500) return [status, oaiErr('The server had an error while processing your request. Sorry about that!', 'server_error'), { 'apim-request-id': 'fake-apim' }];
	if (status === 401) return [401, E401, {}];
	if (status === 404) return [404, E404_DEP, {}];
	return [status, { error: { code: String(status), message: `Fake error with status ${status}.` } }, {}];
}

const API_VERSION_RE = /^(\d{4}-\d{2}-\d{2})(-preview)?$/;

/* True when this api-version accepts stream_options (2024-09-01-preview on;
 * versions without a date, such as the v1 API's, accept it). */
function versionHasStreamOptions(v) {
	if (v === null) return true;
	const m = API_VERSION_RE.exec(v);
	if (!m) return true;
	return m[1] >= '2024-09-01';
}

/* Handles one chat or embeddings call once path and auth are known good. */
async function serve(ctx, kind, deployment, apiVersion) {
	const { res } = ctx;
	if (ctx.jsonError || ctx.json === undefined) {
		return sendJSON(res, 400, oaiErr("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"));
	}
	const b = ctx.json;
	if (!b || typeof b !== 'object' || Array.isArray(b)) {
		return sendJSON(res, 400, oaiErr('Invalid type for request body: expected an object.', 'invalid_request_error', null, 'invalid_type'));
	}
	if (deployment === null) { // v1 form: the deployment is the body's model
		if (typeof b.model !== 'string' || !b.model) {
			return sendJSON(res, 400, oaiErr('you must provide a model parameter', 'invalid_request_error', 'model', null));
		}
		deployment = b.model;
	}
	if (!deployments.includes(deployment)) return sendJSON(res, 404, E404_DEP);
	const headers = { 'apim-request-id': 'fake-apim', 'x-ms-region': 'Fake Region' };
	if (kind === 'embeddings') {
		const e = embeddingInputError(b.input);
		if (e) return sendJSON(res, 400, oaiErr(e, 'invalid_request_error', 'input', null));
		const sw = ctx.switches(embeddingDirectiveText(b.input));
		return answerEmbeddings(ctx, { sw, errorFor, headers, model: args.embeddingModelName });
	}
	if (!Array.isArray(b.messages) || b.messages.length === 0) {
		return sendJSON(res, 400, oaiErr(b.messages === undefined ? "Missing required parameter: 'messages'." : "Invalid 'messages': expected a non-empty array.", 'invalid_request_error', 'messages', null));
	}
	if (b.stream_options !== undefined && b.stream_options !== null) {
		if (!versionHasStreamOptions(apiVersion)) {
			return sendJSON(res, 400, oaiErr('Unrecognized request argument supplied: stream_options'));
		}
		if (b.stream !== true) {
			return sendJSON(res, 400, oaiErr("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'invalid_request_error', 'stream_options', null));
		}
	}
	const sw = ctx.switches(lastUserText(b.messages));
	return answerChat(ctx, {
		sw, errorFor, headers, model: args.modelName,
		decorateResponse: (o) => {
			o.prompt_filter_results = PROMPT_FILTERS;
			for (const c of o.choices) c.content_filter_results = CHOICE_FILTERS;
			return o;
		},
		decorateChunk: (c, k) => {
			for (const ch of c.choices) {
				ch.content_filter_results = k === 'content' ? { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE } : {};
			}
			return c;
		},
		streamPrefix: [PROMPT_FILTER_CHUNK],
		beforeFinish: [ASYNC_FILTER_CHUNK],
	});
}

createFake({
	name: 'azure',
	port: args.port,
	async handle(ctx) {
		const p = ctx.path;
		let kind = null, deployment = null, v1 = false;
		let m = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|embeddings)$/.exec(p);
		if (m && ctx.method === 'POST') {
			try { deployment = decodeURIComponent(m[1]); } catch { return sendJSON(ctx.res, 404, E404); }
			kind = m[2] === 'embeddings' ? 'embeddings' : 'chat';
		} else if ((m = /^\/openai\/v1\/(chat\/completions|embeddings)$/.exec(p)) && ctx.method === 'POST') {
			kind = m[1] === 'embeddings' ? 'embeddings' : 'chat';
			v1 = true;
		} else if (p === '/openai/v1/models' && ctx.method === 'GET') {
			kind = 'models';
			v1 = true;
		} else {
			return sendJSON(ctx.res, 404, E404);
		}
		const apiVersion = ctx.query.has('api-version') ? ctx.query.get('api-version') : null;
		if (!v1 && (apiVersion === null || !API_VERSION_RE.test(apiVersion))) return sendJSON(ctx.res, 404, E404);
		if (ctx.headers['api-key'] !== args.key) return sendJSON(ctx.res, 401, E401);
		if (kind === 'models') {
			return sendJSON(ctx.res, 200, { object: 'list', data: deployments.map((id) => ({ id, object: 'model', created: 1686935002, owned_by: 'system' })) });
		}
		return serve(ctx, kind, v1 ? null : deployment, v1 ? null : apiVersion);
	},
});

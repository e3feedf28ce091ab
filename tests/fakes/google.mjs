// google.mjs - fake Google AI Studio (Gemini API), Vertex AI (express and
// project paths) and OAuth token server, for tests.  Node 20, no deps.
//
//   node tests/fakes/google.mjs --port 0 [--sa-public-key FILE] [--token-ttl S]
//        [--api-key K]... [--bearer T]...
// prints {"port":N} once listening on 127.0.0.1.
//
// Checks what Google checks: the auth header per flavour (x-goog-api-key or
// ?key= on AI Studio and Vertex express paths, Authorization: Bearer on
// Vertex project paths, where an API key gets Google's 401), the path
// shape, every JSON field name against the protos (unknown names get
// Google's 400 "Invalid JSON payload received. Unknown name ..."; Vertex has
// no `id` on function parts), thought signatures on echoed function calls,
// and function responses naming an earlier call.  Answers JSON, or SSE
// framed with \r\n\r\n and no [DONE] (alt=sse), or a JSON array stream
// without alt=sse.
//
// POST /token: RFC 7523 jwt-bearer; verifies the RS256 signature with
// --sa-public-key and the claims (aud, iss, scope, iat/exp); the access token
// lives --token-ttl seconds (default 3599).  GET /__token_count counts
// successful exchanges.  Also GET /__requests, POST /__reset,
// POST /__control (switches), as in the brief.
//
// Directives (last user text, or /__control): __fake:status=N,
// __fake:delay_first_byte_ms=N, __fake:drop_mid_stream, __fake:reply=TEXT,
// __fake:tool_call=NAME.  Model "missing-model" answers 404.
// Usage: prompt = words in all text parts (systemInstruction + contents),
// completion = words in the reply.
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseDirectives } from './common.mjs';

// Generated from reference/specs/google-*-protos (message -> jsonName -> [type, repeated, map]).
const PROTO_AISTUDIO = {"EmbedContentRequest":{"model":["string",0,0],"content":["Content",0,0],"taskType":["enum",0,0],"title":["string",0,0],"outputDimensionality":["number",0,0]},"Content":{"parts":["Part",1,0],"role":["string",0,0]},"Part":{"text":["string",0,0],"inlineData":["Blob",0,0],"functionCall":["FunctionCall",0,0],"functionResponse":["FunctionResponse",0,0],"fileData":["FileData",0,0],"executableCode":["ExecutableCode",0,0],"codeExecutionResult":["CodeExecutionResult",0,0],"videoMetadata":["VideoMetadata",0,0],"thought":["bool",0,0],"thoughtSignature":["string",0,0],"partMetadata":["ANY",0,0]},"VideoMetadata":{"startOffset":["ANY",0,0],"endOffset":["ANY",0,0],"fps":["number",0,0]},"CodeExecutionResult":{"outcome":["enum",0,0],"output":["string",0,0]},"ExecutableCode":{"language":["enum",0,0],"code":["string",0,0]},"FileData":{"mimeType":["string",0,0],"fileUri":["string",0,0]},"FunctionResponse":{"id":["string",0,0],"name":["string",0,0],"response":["ANY",0,0],"parts":["FunctionResponsePart",1,0],"willContinue":["bool",0,0],"scheduling":["enum",0,0]},"FunctionResponsePart":{"inlineData":["FunctionResponseBlob",0,0]},"FunctionResponseBlob":{"mimeType":["string",0,0],"data":["string",0,0]},"FunctionCall":{"id":["string",0,0],"name":["string",0,0],"args":["ANY",0,0]},"Blob":{"mimeType":["string",0,0],"data":["string",0,0]},"BatchEmbedContentsRequest":{"model":["string",0,0],"requests":["EmbedContentRequest",1,0]},"GenerateContentRequest":{"model":["string",0,0],"systemInstruction":["Content",0,0],"contents":["Content",1,0],"tools":["Tool",1,0],"toolConfig":["ToolConfig",0,0],"safetySettings":["SafetySetting",1,0],"generationConfig":["GenerationConfig",0,0],"cachedContent":["string",0,0]},"GenerationConfig":{"candidateCount":["number",0,0],"stopSequences":["string",1,0],"maxOutputTokens":["number",0,0],"temperature":["number",0,0],"topP":["number",0,0],"topK":["number",0,0],"seed":["number",0,0],"responseMimeType":["string",0,0],"responseSchema":["Schema",0,0],"responseJsonSchema":["ANY",0,0],"responseJsonSchemaOrdered":["ANY",0,0],"presencePenalty":["number",0,0],"frequencyPenalty":["number",0,0],"responseLogprobs":["bool",0,0],"logprobs":["number",0,0],"enableEnhancedCivicAnswers":["bool",0,0],"responseModalities":["enum",1,0],"speechConfig":["SpeechConfig",0,0],"thinkingConfig":["ThinkingConfig",0,0],"imageConfig":["ImageConfig",0,0],"mediaResolution":["enum",0,0]},"ImageConfig":{"aspectRatio":["string",0,0]},"ThinkingConfig":{"includeThoughts":["bool",0,0],"thinkingBudget":["number",0,0]},"SpeechConfig":{"voiceConfig":["VoiceConfig",0,0],"multiSpeakerVoiceConfig":["MultiSpeakerVoiceConfig",0,0],"languageCode":["string",0,0]},"MultiSpeakerVoiceConfig":{"speakerVoiceConfigs":["SpeakerVoiceConfig",1,0]},"SpeakerVoiceConfig":{"speaker":["string",0,0],"voiceConfig":["VoiceConfig",0,0]},"VoiceConfig":{"prebuiltVoiceConfig":["PrebuiltVoiceConfig",0,0]},"PrebuiltVoiceConfig":{"voiceName":["string",0,0]},"Schema":{"type":["enum",0,0],"format":["string",0,0],"title":["string",0,0],"description":["string",0,0],"nullable":["bool",0,0],"enum":["string",1,0],"items":["Schema",0,0],"maxItems":["number",0,0],"minItems":["number",0,0],"properties":["Schema",0,1],"required":["string",1,0],"minProperties":["number",0,0],"maxProperties":["number",0,0],"minimum":["number",0,0],"maximum":["number",0,0],"minLength":["number",0,0],"maxLength":["number",0,0],"pattern":["string",0,0],"example":["ANY",0,0],"anyOf":["Schema",1,0],"propertyOrdering":["string",1,0],"default":["ANY",0,0]},"SafetySetting":{"category":["enum",0,0],"threshold":["enum",0,0]},"ToolConfig":{"functionCallingConfig":["FunctionCallingConfig",0,0],"retrievalConfig":["RetrievalConfig",0,0]},"RetrievalConfig":{"latLng":["ANY",0,0],"languageCode":["string",0,0]},"FunctionCallingConfig":{"mode":["enum",0,0],"allowedFunctionNames":["string",1,0]},"Tool":{"functionDeclarations":["FunctionDeclaration",1,0],"googleSearchRetrieval":["GoogleSearchRetrieval",0,0],"codeExecution":["CodeExecution",0,0],"googleSearch":["Tool.GoogleSearch",0,0],"computerUse":["Tool.ComputerUse",0,0],"urlContext":["UrlContext",0,0],"fileSearch":["FileSearch",0,0],"googleMaps":["GoogleMaps",0,0]},"GoogleMaps":{"enableWidget":["bool",0,0]},"FileSearch":{"retrievalResources":["FileSearch.RetrievalResource",1,0],"retrievalConfig":["FileSearch.RetrievalConfig",0,0]},"FileSearch.RetrievalConfig":{"topK":["number",0,0],"metadataFilter":["string",0,0]},"FileSearch.RetrievalResource":{"ragStoreName":["string",0,0]},"UrlContext":{},"Tool.ComputerUse":{"environment":["enum",0,0],"excludedPredefinedFunctions":["string",1,0]},"Tool.GoogleSearch":{"timeRangeFilter":["ANY",0,0]},"CodeExecution":{},"GoogleSearchRetrieval":{"dynamicRetrievalConfig":["DynamicRetrievalConfig",0,0]},"DynamicRetrievalConfig":{"mode":["enum",0,0],"dynamicThreshold":["number",0,0]},"FunctionDeclaration":{"name":["string",0,0],"description":["string",0,0],"parameters":["Schema",0,0],"parametersJsonSchema":["ANY",0,0],"response":["Schema",0,0],"responseJsonSchema":["ANY",0,0],"behavior":["enum",0,0]}};
const PROTO_VERTEX = {"GenerateContentRequest":{"model":["string",0,0],"contents":["Content",1,0],"systemInstruction":["Content",0,0],"cachedContent":["string",0,0],"tools":["Tool",1,0],"toolConfig":["ToolConfig",0,0],"labels":["string",0,1],"safetySettings":["SafetySetting",1,0],"modelArmorConfig":["ModelArmorConfig",0,0],"generationConfig":["GenerationConfig",0,0]},"GenerationConfig":{"temperature":["number",0,0],"topP":["number",0,0],"topK":["number",0,0],"candidateCount":["number",0,0],"maxOutputTokens":["number",0,0],"stopSequences":["string",1,0],"responseLogprobs":["bool",0,0],"logprobs":["number",0,0],"presencePenalty":["number",0,0],"frequencyPenalty":["number",0,0],"seed":["number",0,0],"responseMimeType":["string",0,0],"responseSchema":["Schema",0,0],"responseJsonSchema":["ANY",0,0],"routingConfig":["GenerationConfig.RoutingConfig",0,0],"audioTimestamp":["bool",0,0],"responseModalities":["enum",1,0],"mediaResolution":["enum",0,0],"speechConfig":["SpeechConfig",0,0],"thinkingConfig":["GenerationConfig.ThinkingConfig",0,0],"imageConfig":["ImageConfig",0,0]},"ImageConfig":{"imageOutputOptions":["ImageConfig.ImageOutputOptions",0,0],"aspectRatio":["string",0,0],"personGeneration":["enum",0,0],"imageSize":["string",0,0]},"ImageConfig.ImageOutputOptions":{"mimeType":["string",0,0],"compressionQuality":["number",0,0]},"GenerationConfig.ThinkingConfig":{"includeThoughts":["bool",0,0],"thinkingBudget":["number",0,0],"thinkingLevel":["enum",0,0]},"SpeechConfig":{"voiceConfig":["VoiceConfig",0,0],"languageCode":["string",0,0],"multiSpeakerVoiceConfig":["MultiSpeakerVoiceConfig",0,0]},"MultiSpeakerVoiceConfig":{"speakerVoiceConfigs":["SpeakerVoiceConfig",1,0]},"SpeakerVoiceConfig":{"speaker":["string",0,0],"voiceConfig":["VoiceConfig",0,0]},"VoiceConfig":{"prebuiltVoiceConfig":["PrebuiltVoiceConfig",0,0],"replicatedVoiceConfig":["ReplicatedVoiceConfig",0,0]},"ReplicatedVoiceConfig":{"mimeType":["string",0,0],"voiceSampleAudio":["string",0,0]},"PrebuiltVoiceConfig":{"voiceName":["string",0,0]},"GenerationConfig.RoutingConfig":{"autoMode":["GenerationConfig.RoutingConfig.AutoRoutingMode",0,0],"manualMode":["GenerationConfig.RoutingConfig.ManualRoutingMode",0,0]},"GenerationConfig.RoutingConfig.ManualRoutingMode":{"modelName":["string",0,0]},"GenerationConfig.RoutingConfig.AutoRoutingMode":{"modelRoutingPreference":["enum",0,0]},"Schema":{"type":["enum",0,0],"format":["string",0,0],"title":["string",0,0],"description":["string",0,0],"nullable":["bool",0,0],"default":["ANY",0,0],"items":["Schema",0,0],"minItems":["number",0,0],"maxItems":["number",0,0],"enum":["string",1,0],"properties":["Schema",0,1],"propertyOrdering":["string",1,0],"required":["string",1,0],"minProperties":["number",0,0],"maxProperties":["number",0,0],"minimum":["number",0,0],"maximum":["number",0,0],"minLength":["number",0,0],"maxLength":["number",0,0],"pattern":["string",0,0],"example":["ANY",0,0],"anyOf":["Schema",1,0],"additionalProperties":["ANY",0,0],"ref":["string",0,0],"defs":["Schema",0,1]},"ModelArmorConfig":{"promptTemplateName":["string",0,0],"responseTemplateName":["string",0,0]},"SafetySetting":{"category":["enum",0,0],"threshold":["enum",0,0],"method":["enum",0,0]},"ToolConfig":{"functionCallingConfig":["FunctionCallingConfig",0,0],"retrievalConfig":["RetrievalConfig",0,0]},"RetrievalConfig":{"latLng":["ANY",0,0],"languageCode":["string",0,0]},"FunctionCallingConfig":{"mode":["enum",0,0],"allowedFunctionNames":["string",1,0],"streamFunctionCallArguments":["bool",0,0]},"Tool":{"functionDeclarations":["FunctionDeclaration",1,0],"retrieval":["Retrieval",0,0],"googleSearch":["Tool.GoogleSearch",0,0],"googleSearchRetrieval":["GoogleSearchRetrieval",0,0],"googleMaps":["GoogleMaps",0,0],"enterpriseWebSearch":["EnterpriseWebSearch",0,0],"parallelAiSearch":["Tool.ParallelAiSearch",0,0],"exaAiSearch":["Tool.ExaAiSearch",0,0],"codeExecution":["Tool.CodeExecution",0,0],"urlContext":["UrlContext",0,0],"computerUse":["Tool.ComputerUse",0,0]},"Tool.ComputerUse":{"environment":["enum",0,0],"excludedPredefinedFunctions":["string",1,0]},"UrlContext":{},"Tool.CodeExecution":{},"Tool.ExaAiSearch":{"apiKey":["string",0,0],"customConfigs":["ANY",0,0]},"Tool.ParallelAiSearch":{"apiKey":["string",0,0],"customConfigs":["ANY",0,0]},"EnterpriseWebSearch":{"excludeDomains":["string",1,0],"blockingConfidence":["ANY",0,0]},"GoogleMaps":{"enableWidget":["bool",0,0]},"GoogleSearchRetrieval":{"dynamicRetrievalConfig":["DynamicRetrievalConfig",0,0]},"DynamicRetrievalConfig":{"mode":["enum",0,0],"dynamicThreshold":["number",0,0]},"Tool.GoogleSearch":{"excludeDomains":["string",1,0],"blockingConfidence":["enum",0,0]},"Retrieval":{"vertexAiSearch":["VertexAISearch",0,0],"vertexRagStore":["VertexRagStore",0,0],"disableAttribution":["bool",0,0]},"VertexRagStore":{"ragResources":["VertexRagStore.RagResource",1,0],"similarityTopK":["number",0,0],"vectorDistanceThreshold":["number",0,0],"ragRetrievalConfig":["RagRetrievalConfig",0,0]},"RagRetrievalConfig":{"topK":["number",0,0],"filter":["RagRetrievalConfig.Filter",0,0],"ranking":["RagRetrievalConfig.Ranking",0,0]},"RagRetrievalConfig.Ranking":{"rankService":["RagRetrievalConfig.Ranking.RankService",0,0],"llmRanker":["RagRetrievalConfig.Ranking.LlmRanker",0,0]},"RagRetrievalConfig.Ranking.LlmRanker":{"modelName":["string",0,0]},"RagRetrievalConfig.Ranking.RankService":{"modelName":["string",0,0]},"RagRetrievalConfig.Filter":{"vectorDistanceThreshold":["number",0,0],"vectorSimilarityThreshold":["number",0,0],"metadataFilter":["string",0,0]},"VertexRagStore.RagResource":{"ragCorpus":["string",0,0],"ragFileIds":["string",1,0]},"VertexAISearch":{"datastore":["string",0,0],"engine":["string",0,0],"maxResults":["number",0,0],"filter":["string",0,0],"dataStoreSpecs":["VertexAISearch.DataStoreSpec",1,0]},"VertexAISearch.DataStoreSpec":{"dataStore":["string",0,0],"filter":["string",0,0]},"FunctionDeclaration":{"name":["string",0,0],"description":["string",0,0],"parameters":["Schema",0,0],"parametersJsonSchema":["ANY",0,0],"response":["Schema",0,0],"responseJsonSchema":["ANY",0,0]},"Content":{"role":["string",0,0],"parts":["Part",1,0]},"Part":{"text":["string",0,0],"inlineData":["Blob",0,0],"fileData":["FileData",0,0],"functionCall":["FunctionCall",0,0],"functionResponse":["FunctionResponse",0,0],"executableCode":["ExecutableCode",0,0],"codeExecutionResult":["CodeExecutionResult",0,0],"thought":["bool",0,0],"thoughtSignature":["string",0,0],"videoMetadata":["VideoMetadata",0,0],"mediaResolution":["enum",0,0]},"VideoMetadata":{"startOffset":["ANY",0,0],"endOffset":["ANY",0,0],"fps":["number",0,0]},"CodeExecutionResult":{"outcome":["enum",0,0],"output":["string",0,0]},"ExecutableCode":{"language":["enum",0,0],"code":["string",0,0]},"FunctionResponse":{"name":["string",0,0],"response":["ANY",0,0],"parts":["FunctionResponsePart",1,0]},"FunctionResponsePart":{"inlineData":["FunctionResponseBlob",0,0],"fileData":["FunctionResponseFileData",0,0]},"FunctionResponseFileData":{"mimeType":["string",0,0],"fileUri":["string",0,0],"displayName":["string",0,0]},"FunctionResponseBlob":{"mimeType":["string",0,0],"data":["string",0,0],"displayName":["string",0,0]},"FunctionCall":{"name":["string",0,0],"args":["ANY",0,0],"partialArgs":["PartialArg",1,0],"willContinue":["bool",0,0]},"PartialArg":{"nullValue":["ANY",0,0],"numberValue":["number",0,0],"stringValue":["string",0,0],"boolValue":["bool",0,0],"jsonPath":["string",0,0],"willContinue":["bool",0,0]},"FileData":{"mimeType":["string",0,0],"fileUri":["string",0,0]},"Blob":{"mimeType":["string",0,0],"data":["string",0,0]}};

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
function opts(name) {
  const out = [];
  for (let i = 0; i < args.length - 1; i++) if (args[i] === name) out.push(args[i + 1]);
  return out;
}
const PORT = Number(opt('--port', '0'));
const PUBKEY_FILE = opt('--sa-public-key', null);
const PUBKEY = PUBKEY_FILE ? crypto.createPublicKey(fs.readFileSync(PUBKEY_FILE)) : null;
let TOKEN_TTL = Number(opt('--token-ttl', '3599'));
const API_KEYS = opts('--api-key');
const BEARERS = opts('--bearer');
const THOUGHT_SIG = 'c2lnLWZha2UtZ29vZ2xl';

let requests = [];
let control = {};
let tokenCount = 0;
let minted = new Map(); // token -> expires (ms)
let callSeq = 0;
let seq = 0;

function gerr(res, code, status, message, details) {
  const body = { error: { code, message, status } };
  if (details) body.error.details = details;
  send(res, code, body);
}
function send(res, code, obj) {
  const s = JSON.stringify(obj);
  res.writeHead(code, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}
const snake = (s) => s.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

// Walks v as message type `type` of `table`; returns an error string or null.
function validate(table, type, v, path) {
  const fields = table[type];
  if (!fields) return null; // message not in the copied protos: accept
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    return `Invalid value at '${path}' (type.googleapis.com/${type}), ${JSON.stringify(v).slice(0, 40)}`;
  for (const [k, val] of Object.entries(v)) {
    const f = fields[k] || fields[camel(k)];
    const p = path ? `${path}.${snake(k)}` : snake(k);
    if (!f) return `Invalid JSON payload received. Unknown name "${k}" at '${path || ''}': Cannot find field.`;
    const [ft, rep, isMap] = f;
    if (isMap) {
      if (typeof val !== 'object' || val === null || Array.isArray(val)) return `Invalid value at '${p}'`;
      let i = 0;
      for (const [, mv] of Object.entries(val)) {
        const e = check(table, ft, mv, `${p}[${i++}].value`);
        if (e) return e;
      }
      continue;
    }
    if (Array.isArray(val) && !rep) return `Invalid JSON payload received. Unknown name "${k}" at '${path}': Proto field is not repeating, cannot start list.`;
    if (rep) {
      if (!Array.isArray(val)) return `Invalid value at '${p}', expected a list`;
      for (let i = 0; i < val.length; i++) {
        const e = check(table, ft, val[i], `${p}[${i}]`);
        if (e) return e;
      }
    } else {
      const e = check(table, ft, val, p);
      if (e) return e;
    }
  }
  return null;
}
function check(table, ft, v, p) {
  switch (ft) {
    case 'ANY': return null;
    case 'string': return typeof v === 'string' ? null : `Invalid value at '${p}' (TYPE_STRING), ${JSON.stringify(v).slice(0, 40)}`;
    case 'bool': return typeof v === 'boolean' ? null : `Invalid value at '${p}' (TYPE_BOOL), ${JSON.stringify(v).slice(0, 40)}`;
    case 'number': return typeof v === 'number' || (typeof v === 'string' && /^-?\d+$/.test(v)) ? null : `Invalid value at '${p}' (TYPE_NUMBER), ${JSON.stringify(v).slice(0, 40)}`;
    case 'enum': return typeof v === 'string' || typeof v === 'number' ? null : `Invalid value at '${p}' (enum), ${JSON.stringify(v).slice(0, 40)}`;
    default: return validate(table, ft, v, p);
  }
}

const words = (s) => (s || '').split(/\s+/).filter(Boolean).length;
function textsOf(content) {
  return ((content && content.parts) || []).map((p) => p.text || '').join(' ');
}
function directives(req) {
  const contents = req.contents || [];
  for (let i = contents.length - 1; i >= 0; i--) {
    if ((contents[i].role || 'user') !== 'user') continue;
    const t = textsOf(contents[i]);
    if (!t.trim()) continue;
    return { ...control, ...parseDirectives(t) };
  }
  return { ...control };
}

function sample(schema) {
  if (!schema || typeof schema !== 'object') return 'x';
  if (schema.anyOf) return sample(schema.anyOf[0]);
  if (schema.enum) return schema.enum[0];
  switch (String(schema.type || (schema.properties ? 'object' : 'string')).toLowerCase()) {
    case 'object': {
      const o = {};
      for (const [k, v] of Object.entries(schema.properties || {})) o[k] = sample(v);
      return o;
    }
    case 'array': return [sample(schema.items)];
    case 'integer': return 1;
    case 'number': return 1.5;
    case 'boolean': return true;
    default: return 'x';
  }
}

// Validates the conversation the way Gemini 3 does; error string or null.
function checkConversation(req, vertex) {
  const calls = [];
  const contents = req.contents;
  if (!Array.isArray(contents) || contents.length === 0) return '* GenerateContentRequest.contents: contents is not specified';
  for (let i = 0; i < contents.length; i++) {
    const c = contents[i];
    if (c.role && c.role !== 'user' && c.role !== 'model') return `Please use a valid role: user, model.`;
    if (!Array.isArray(c.parts) || c.parts.length === 0) return `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.`;
    let first = true;
    for (let j = 0; j < c.parts.length; j++) {
      const p = c.parts[j];
      if (p.functionCall) {
        if (c.role !== 'model') return `function call turn comes from the user at contents[${i}]`;
        if (first && p.thoughtSignature !== THOUGHT_SIG)
          return `Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call \`default_api:${p.functionCall.name}\` , position ${j + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.`;
        first = false;
        calls.push(p.functionCall.name);
      }
      if (p.functionResponse) {
        if (!calls.includes(p.functionResponse.name)) return `function response name ${p.functionResponse.name} does not match any function call`;
        if (!p.functionResponse.response || typeof p.functionResponse.response !== 'object') return `* GenerateContentRequest.contents[${i}].parts[${j}].function_response.response: required`;
      }
    }
  }
  return null;
}

function answer(req, vertex, model) {
  const d = directives(req);
  const prompt = words(textsOf(req.systemInstruction)) + (req.contents || []).reduce((n, c) => n + words(textsOf(c)), 0);
  const n = Math.max(1, (req.generationConfig && req.generationConfig.candidateCount) || 1);
  let parts;
  let reply = d.reply !== undefined ? String(d.reply) : 'Hello from fake google';
  const gc = req.generationConfig || {};
  const last = (req.contents || [])[req.contents.length - 1] || {};
  const fr = (last.parts || []).find((p) => p.functionResponse);
  if (d.tool_call && !fr) {
    const call = { name: d.tool_call, args: { city: 'Paris' } };
    if (!vertex) call.id = `fc-${++callSeq}`;
    parts = [{ functionCall: call, thoughtSignature: THOUGHT_SIG }];
    reply = '';
  } else {
    if (fr) reply = `tool said ${JSON.stringify(fr.functionResponse.response)}`;
    if (gc.responseMimeType === 'application/json') reply = JSON.stringify(gc.responseSchema ? sample(gc.responseSchema) : { reply });
    parts = [{ text: reply }];
  }
  const candidates = [];
  for (let i = 0; i < n; i++) candidates.push({ content: { role: 'model', parts }, finishReason: 'STOP', index: i });
  const completion = words(reply) * n;
  return {
    d, reply, parts,
    body: {
      candidates,
      usageMetadata: { promptTokenCount: prompt, candidatesTokenCount: completion, totalTokenCount: prompt + completion },
      modelVersion: model, responseId: crypto.randomBytes(9).toString('base64url'),
    },
  };
}

function embedValues(text, dim) {
  const h = crypto.createHash('sha256').update(text).digest();
  const v = [];
  for (let i = 0; i < dim; i++) v.push(Math.round(((h[i % 32] - 128) / 128) * 1e4) / 1e4);
  return v;
}

function authCheck(req, res, url, flavour) {
  const key = req.headers['x-goog-api-key'] || url.searchParams.get('key');
  const auth = req.headers['authorization'] || '';
  if (flavour === 'project') {
    if (!auth.startsWith('Bearer ')) {
      if (key) gerr(res, 401, 'UNAUTHENTICATED', 'API keys are not supported by this API. Expected OAuth2 access token or other authentication credentials that assert a principal. See https://cloud.google.com/docs/authentication');
      else gerr(res, 401, 'UNAUTHENTICATED', 'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.');
      return false;
    }
    const tok = auth.slice(7);
    const exp = minted.get(tok);
    const ok = exp !== undefined ? exp > Date.now() : BEARERS.length ? BEARERS.includes(tok) : tok.startsWith('ya29.') && !tok.startsWith('ya29.fake-');
    if (!ok) {
      gerr(res, 401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.');
      return false;
    }
    return true;
  }
  if (!key) {
    if (auth.startsWith('Bearer ') && flavour === 'express') return true;
    gerr(res, 403, 'PERMISSION_DENIED', 'Method doesn\'t allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.');
    return false;
  }
  const ok = API_KEYS.length ? API_KEYS.includes(key) : !/invalid|bad/i.test(key);
  if (!ok) {
    gerr(res, 400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
      { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com', metadata: { service: flavour === 'aistudio' ? 'generativelanguage.googleapis.com' : 'aiplatform.googleapis.com' } },
    ]);
    return false;
  }
  return true;
}

function b64urlJson(s) {
  try { return JSON.parse(Buffer.from(s, 'base64url').toString('utf8')); } catch { return null; }
}

function tokenEndpoint(req, res, body, url) {
  const form = new URLSearchParams(body);
  const bad = (desc) => send(res, 400, { error: 'invalid_grant', error_description: desc });
  if ((req.headers['content-type'] || '').split(';')[0] !== 'application/x-www-form-urlencoded')
    return send(res, 400, { error: 'invalid_request', error_description: 'Content-Type must be application/x-www-form-urlencoded' });
  if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer')
    return send(res, 400, { error: 'unsupported_grant_type', error_description: 'Invalid grant_type: ' + form.get('grant_type') });
  const jwt = form.get('assertion') || '';
  const segs = jwt.split('.');
  if (segs.length !== 3) return bad('Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.');
  const h = b64urlJson(segs[0]), c = b64urlJson(segs[1]);
  if (!h || !c || h.alg !== 'RS256' || h.typ !== 'JWT') return bad('Invalid JWT header');
  if (!PUBKEY) return bad('no public key configured on the fake (--sa-public-key)');
  const ok = crypto.verify('RSA-SHA256', Buffer.from(segs[0] + '.' + segs[1]), PUBKEY, Buffer.from(segs[2], 'base64url'));
  if (!ok) return bad('Invalid JWT Signature.');
  const now = Math.floor(Date.now() / 1000);
  const expectAud = `http://127.0.0.1:${server.address().port}${url.pathname}`;
  if (c.aud !== expectAud) return bad(`Invalid JWT: audience ${c.aud} is not ${expectAud}`);
  if (!c.iss || !/@/.test(c.iss)) return bad('Invalid JWT: iss');
  if (!String(c.scope || '').split(' ').includes('https://www.googleapis.com/auth/cloud-platform')) return bad('Invalid JWT: scope');
  if (typeof c.iat !== 'number' || typeof c.exp !== 'number' || c.exp - c.iat > 3600 || c.exp <= now || c.iat > now + 60)
    return bad('Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
  tokenCount++;
  const tok = `ya29.fake-${tokenCount}-${crypto.randomBytes(12).toString('base64url')}`;
  minted.set(tok, Date.now() + TOKEN_TTL * 1000);
  send(res, 200, { access_token: tok, expires_in: TOKEN_TTL, token_type: 'Bearer' });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/__requests' && req.method === 'GET') return send(res, 200, requests);
    if (url.pathname === '/__token_count' && req.method === 'GET') return send(res, 200, { count: tokenCount });
    if (url.pathname === '/__reset' && req.method === 'POST') {
      requests = []; control = {}; tokenCount = 0; minted = new Map(); TOKEN_TTL = Number(opt('--token-ttl', '3599'));
      return send(res, 200, { ok: true });
    }
    if (url.pathname === '/__control' && req.method === 'POST') {
      try { Object.assign(control, JSON.parse(body || '{}')); } catch { return send(res, 400, { error: 'bad json' }); }
      if (control.token_ttl !== undefined) TOKEN_TTL = Number(control.token_ttl);
      return send(res, 200, control);
    }
    const record = {
      seq: ++seq, method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), url: req.url,
      headers: { ...req.headers }, rawHeaders: req.rawHeaders.slice(), body, completed: false, aborted: false,
    };
    requests.push(record);
    res.on('finish', () => { record.completed = true; });
    res.on('close', () => { if (!record.completed) record.aborted = true; });
    if (req.method === 'POST' && /^\/token/.test(url.pathname)) return tokenEndpoint(req, res, body, url);
    route(req, res, url, body);
  });
});

function route(req, res, url, body) {
  let m, flavour, model, method;
  const p = url.pathname;
  if ((m = p.match(/^\/v1beta\/models\/([^/:]+):(\w+)$/))) { flavour = 'aistudio'; model = m[1]; method = m[2]; }
  else if ((m = p.match(/^\/v1\/publishers\/google\/models\/([^/:]+):(\w+)$/))) { flavour = 'express'; model = m[1]; method = m[2]; }
  else if ((m = p.match(/^\/v1\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/google\/models\/([^/:]+):(\w+)$/))) { flavour = 'project'; model = m[3]; method = m[4]; }
  else return gerr(res, 404, 'NOT_FOUND', `The requested URL ${p} was not found on this server.`);
  if (req.method !== 'POST') return gerr(res, 405, 'INVALID_ARGUMENT', 'method not allowed');
  model = decodeURIComponent(model);
  if (!authCheck(req, res, url, flavour)) return;
  const vertex = flavour !== 'aistudio';
  let j;
  try { j = JSON.parse(body); } catch { return gerr(res, 400, 'INVALID_ARGUMENT', `Invalid JSON payload received. Unexpected token.`); }
  if (model === 'missing-model') return gerr(res, 404, 'NOT_FOUND', `models/${model} is not found for API version ${vertex ? 'v1' : 'v1beta'}, or is not supported for generateContent.`);
  const table = vertex ? PROTO_VERTEX : PROTO_AISTUDIO;
  if (method === 'generateContent' || method === 'streamGenerateContent') {
    const e = validate(table, 'GenerateContentRequest', j, '');
    if (e) return gerr(res, 400, 'INVALID_ARGUMENT', e);
    const ce = checkConversation(j, vertex);
    if (ce) return gerr(res, 400, 'INVALID_ARGUMENT', ce);
    const a = answer(j, vertex, model);
    const d = a.d;
    const st = Number(d.status || 0);
    const go = () => {
      if (st >= 400) {
        const names = { 400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND', 429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL', 503: 'UNAVAILABLE' };
        return gerr(res, st, names[st] || 'UNKNOWN', st === 429 ? 'Resource has been exhausted (e.g. check quota).' : `fake error ${st}`);
      }
      if (method === 'generateContent') return send(res, 200, a.body);
      stream(res, url, a, d);
    };
    const delay = Number(d.delay_first_byte_ms || 0);
    return delay ? setTimeout(go, delay) : go();
  }
  if (!vertex && (method === 'batchEmbedContents' || method === 'embedContent')) {
    const root = method === 'batchEmbedContents' ? 'BatchEmbedContentsRequest' : 'EmbedContentRequest';
    const e = validate(PROTO_AISTUDIO, root, j, '');
    if (e) return gerr(res, 400, 'INVALID_ARGUMENT', e);
    const reqs = method === 'batchEmbedContents' ? j.requests || [] : [j];
    if (!reqs.length) return gerr(res, 400, 'INVALID_ARGUMENT', '* BatchEmbedContentsRequest.requests: must not be empty');
    const out = [];
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i];
      if (method === 'batchEmbedContents' && r.model !== `models/${model}`)
        return gerr(res, 400, 'INVALID_ARGUMENT', `* BatchEmbedContentsRequest.requests[${i}].model: The model in the request (${r.model}) does not match the model in the URL (models/${model}).`);
      out.push({ values: embedValues(textsOf(r.content), r.outputDimensionality || 8) });
    }
    return send(res, 200, method === 'batchEmbedContents' ? { embeddings: out } : { embedding: out[0] });
  }
  if (vertex && method === 'predict') {
    for (const k of Object.keys(j)) if (!['instances', 'parameters'].includes(k)) return gerr(res, 400, 'INVALID_ARGUMENT', `Invalid JSON payload received. Unknown name "${k}": Cannot find field.`);
    if (!Array.isArray(j.instances) || !j.instances.length) return gerr(res, 400, 'INVALID_ARGUMENT', 'instances must be a non-empty list');
    const dim = (j.parameters && j.parameters.outputDimensionality) || 8;
    const preds = [];
    for (const inst of j.instances) {
      for (const k of Object.keys(inst)) if (!['content', 'task_type', 'title'].includes(k)) return gerr(res, 400, 'INVALID_ARGUMENT', `Unknown instance field ${k}`);
      if (typeof inst.content !== 'string') return gerr(res, 400, 'INVALID_ARGUMENT', 'instance content must be a string');
      preds.push({ embeddings: { values: embedValues(inst.content, dim), statistics: { token_count: words(inst.content), truncated: false } } });
    }
    return send(res, 200, { predictions: preds, metadata: { billableCharacterCount: j.instances.reduce((n, i) => n + i.content.length, 0) } });
  }
  gerr(res, 404, 'NOT_FOUND', `Method ${method} is not found.`);
}

function stream(res, url, a, d) {
  const sse = url.searchParams.get('alt') === 'sse';
  res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json; charset=UTF-8' });
  const b = a.body;
  const events = [];
  const base = { modelVersion: b.modelVersion, responseId: b.responseId };
  const n = b.candidates.length;
  const cand = (parts, last) => Array.from({ length: n }, (_, i) => ({ content: { role: 'model', parts }, index: i, ...(last ? { finishReason: 'STOP' } : {}) }));
  if (a.parts[0].text !== undefined) {
    const pieces = a.reply.split(/(?<= )/);
    pieces.forEach((w, i) => {
      const ev = { candidates: cand([{ text: w }], i === pieces.length - 1), ...base };
      if (i === pieces.length - 1) ev.usageMetadata = b.usageMetadata;
      events.push(ev);
    });
  } else {
    events.push({ candidates: cand(a.parts, true), usageMetadata: b.usageMetadata, ...base });
  }
  let i = 0;
  if (!sse) res.write('[');
  const next = () => {
    if (i >= events.length) {
      if (!sse) res.write(']');
      return res.end();
    }
    const ev = JSON.stringify(events[i]);
    res.write(sse ? `data: ${ev}\r\n\r\n` : (i ? ',\r\n' : '') + ev);
    i++;
    if (d.drop_mid_stream && i === 1) return setTimeout(() => res.socket.destroy(), 20);
    setTimeout(next, Number(d.chunk_delay_ms || 5));
  };
  next();
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

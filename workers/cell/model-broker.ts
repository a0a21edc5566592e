/**
 * The cell's model broker: the only holder of the model's API key (LLM_API_KEY) below the front. Workers
 * run agent code, which can read anything in its worker, so they never get the key: their OpenAI client sends each
 * request over the run's MessagePort (workers/llm/broker-fetch.ts), and the broker checks it (URL under
 * LLM_BASE_URL, one of LLM_OPERATIONS, bounded body, a few at a time per run), adds the key and streams the answer
 * back. A worker can thus use the key only for the configured endpoint's operations that answer a request (not those
 * that read what the provider stores for the key: other users' stored completions, files), and never learn it.
 *
 * Never logs the key, a request's headers or its body.
 */
import type { ModelCallTiming } from '../../protocol/cell-messages.js';
import type { ModelReply, ModelRequest } from '../../protocol/worker-messages.js';
import { messageOf } from '../../protocol/errors.js';
import { describeModelOperations, operationAllowed, type ModelOperations } from '../../protocol/model-operations.js';

export const MAX_MODEL_REQUEST_BYTES = 4 * 1024 * 1024;
export const MAX_MODEL_REQUESTS_PER_RUN = 4;
const MAX_URL_CHARS = 8192;
const MAX_HEADERS = 64;
const MAX_HEADER_BYTES = 16 * 1024;
const METHODS = new Set(['GET', 'POST']);
const MAX_REFUSALS_LOGGED_PER_RUN = 20;

/** Credentials a worker must not choose (the broker sets the key itself), and hop-by-hop headers fetch sets. */
const DROPPED_REQUEST_HEADERS = new Set([
  'authorization',
  'api-key',
  'x-api-key',
  'proxy-authorization',
  'cookie',
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
]);
/** fetch decodes the body already; cookies are nobody's business in a worker. */
const DROPPED_RESPONSE_HEADERS = new Set(['set-cookie', 'set-cookie2', 'content-encoding', 'content-length', 'transfer-encoding', 'connection']);

export type BrokerErrorCode = 'NOT_CONFIGURED' | 'BAD_REQUEST' | 'URL_NOT_ALLOWED' | 'METHOD_NOT_ALLOWED' | 'BODY_TOO_LARGE' | 'TOO_MANY_REQUESTS' | 'UPSTREAM_FAILED';

class Refusal extends Error {
  constructor(
    readonly code: BrokerErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface ModelBrokerSession {
  /** Handles one message from the run's worker; false when it is not a broker message. */
  handle(msg: unknown): boolean;
  /** The run is over: every request still open is aborted; later messages are ignored. */
  close(): void;
  readonly active: number;
  /** What this run asked for and was refused (codes, once each), for its isolation report. */
  refused(): string[];
}

/** A traced run (its run message had a traceparent): its trace id for log lines, and where its model calls' timings go. */
export interface ModelCallTracing {
  traceId: string;
  onCall(call: ModelCallTiming): void;
}

export interface ModelBroker {
  /** One run's session; its answers go out through `post` (the run's port). */
  open(runId: string, post: (msg: ModelReply) => void, tracing?: ModelCallTracing): ModelBrokerSession;
}

/** Where Node's fetch keeps its global dispatcher (undici's own convention). */
const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');

interface ConnectionPool {
  destroy(): Promise<void>;
}

/** Makes Node create fetch's global dispatcher now (a data: URL, no network), so its class is known. */
export async function settleFetch(): Promise<void> {
  await (await fetch('data:,')).arrayBuffer();
}

/**
 * A connection pool of the class Node's fetch uses, or null before settleFetch(). Each run gets its own, destroyed
 * when the run ends: no keep-alive connection carries from one run to another, and a stalled request's socket is
 * closed for certain (an abort alone was seen to leave it open under the permission model after a few seconds).
 */
function openPool(): ConnectionPool | null {
  const shared = (globalThis as Record<symbol, unknown>)[GLOBAL_DISPATCHER] as { constructor: new () => ConnectionPool } | undefined;
  return shared ? new shared.constructor() : null;
}

export function createModelBroker(deps: {
  /** LLM_BASE_URL: the only place requests may go. */
  baseUrl: string | null;
  apiKey: string | null;
  /** LLM_OPERATIONS: the operations forwarded. */
  operations: ModelOperations;
  log: (obj: object, msg: string) => void;
  fetch?: typeof fetch;
  /** Resolves once fetch's global dispatcher exists (settleFetch()); requests wait for it. */
  fetchReady?: () => Promise<void>;
}): ModelBroker {
  const base = deps.baseUrl ? new URL(deps.baseUrl) : null;
  const doFetch = deps.fetch ?? fetch;
  // Kept in this closure only: not on any object a caller gets back.
  const authorization = deps.apiKey ? `Bearer ${deps.apiKey}` : null;

  return {
    open(runId, post, tracing) {
      const active = new Map<number, AbortController>();
      let closed = false;
      let pool: ConnectionPool | null = null;
      const send = (msg: ModelReply) => {
        if (closed) return;
        try {
          post(msg);
        } catch {
          // the port is closed: the run is over
        }
      };
      let refusals = 0;
      const refusedCodes = new Set<string>();
      const refuse = (id: number, err: Refusal) => {
        if (err.code !== 'UPSTREAM_FAILED' && err.code !== 'NOT_CONFIGURED') refusedCodes.add(`model:${err.code}`);
        // A run sending refused requests in a loop must not flood the cell's log.
        if (++refusals <= MAX_REFUSALS_LOGGED_PER_RUN) deps.log({ run_id: runId, ...(tracing ? { trace_id: tracing.traceId } : {}), code: err.code, reason: err.message, refusals }, 'model request refused');
        send({ type: 'model_error', id, error: { code: err.code, message: `model broker: ${err.message}` } });
      };

      async function forward(id: number, controller: AbortController, request: { url: string; init: RequestInit }) {
        const startedAt = Date.now();
        let outcome: ModelCallTiming['outcome'] = 'aborted';
        let httpStatus: number | null = null;
        try {
          if (!pool && !deps.fetch) await deps.fetchReady?.();
          pool ??= deps.fetch ? null : openPool();
          const init = { ...request.init, signal: controller.signal, ...(pool ? { dispatcher: pool } : {}) } as RequestInit;
          const res = await doFetch(request.url, init);
          httpStatus = res.status;
          if (controller.signal.aborted) return;
          const headers: [string, string][] = [];
          res.headers.forEach((value, name) => {
            if (!DROPPED_RESPONSE_HEADERS.has(name)) headers.push([name, value]);
          });
          send({ type: 'model_response', id, status: res.status, statusText: res.statusText, headers });
          if (res.body) {
            for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
              if (controller.signal.aborted || closed) return;
              send({ type: 'model_chunk', id, chunk });
            }
          }
          send({ type: 'model_end', id });
          outcome = res.ok || (res.status >= 300 && res.status < 400) ? 'ok' : 'http_error';
        } catch (err) {
          if (controller.signal.aborted) return; // the worker gave up on it, or the run ended
          outcome = 'failed';
          const cause = (err as { cause?: { code?: unknown; message?: unknown } })?.cause;
          const detail = [cause?.code, cause?.message].filter((x) => typeof x === 'string' && x).join(' ');
          const message = `${messageOf(err)}${detail ? ` (${detail})` : ''}`.slice(0, 1000);
          send({ type: 'model_error', id, error: { code: 'UPSTREAM_FAILED', message: `model broker: ${message}` } });
        } finally {
          active.delete(id);
          tracing?.onCall({ startedAt, endedAt: Date.now(), outcome, httpStatus });
        }
      }

      return {
        get active() {
          return active.size;
        },
        refused: () => [...refusedCodes],
        handle(raw) {
          const msg = raw as Partial<ModelRequest> | { type?: unknown; id?: unknown } | null;
          if (!msg || typeof msg !== 'object') return false;
          if (msg.type === 'model_abort') {
            if (typeof msg.id === 'number') active.get(msg.id)?.abort();
            return true;
          }
          if (msg.type !== 'model_request') return false;
          if (closed) return true;
          const id = (msg as Partial<ModelRequest>).id;
          if (typeof id !== 'number' || !Number.isSafeInteger(id)) return true; // nobody to answer
          if (active.has(id)) {
            refuse(id, new Refusal('BAD_REQUEST', `request id ${id} is in use`));
            return true;
          }
          if (active.size >= MAX_MODEL_REQUESTS_PER_RUN) {
            refuse(id, new Refusal('TOO_MANY_REQUESTS', `at most ${MAX_MODEL_REQUESTS_PER_RUN} model requests at once per run`));
            return true;
          }
          let request: { url: string; init: RequestInit };
          try {
            request = checkRequest(msg as Partial<ModelRequest>, base, authorization, deps.operations);
          } catch (err) {
            if (err instanceof Refusal) refuse(id, err);
            else refuse(id, new Refusal('BAD_REQUEST', messageOf(err).slice(0, 300)));
            return true;
          }
          const controller = new AbortController();
          active.set(id, controller);
          void forward(id, controller, request);
          return true;
        },
        close() {
          if (closed) return;
          closed = true;
          for (const controller of active.values()) controller.abort();
          active.clear();
          pool?.destroy().catch(() => undefined);
        },
      };
    },
  };
}

function checkRequest(msg: Partial<ModelRequest>, base: URL | null, authorization: string | null, operations: ModelOperations): { url: string; init: RequestInit } {
  if (!base) throw new Refusal('NOT_CONFIGURED', 'no model endpoint is configured (LLM_BASE_URL)');
  if (typeof msg.url !== 'string' || msg.url.length > MAX_URL_CHARS) throw new Refusal('BAD_REQUEST', `url must be a string of at most ${MAX_URL_CHARS} characters`);
  const url = allowedUrl(msg.url, base);
  if (!url) throw new Refusal('URL_NOT_ALLOWED', `requests may only go to the model endpoint, under ${base.href}`);
  const method = typeof msg.method === 'string' ? msg.method.toUpperCase() : '';
  if (!METHODS.has(method)) throw new Refusal('METHOD_NOT_ALLOWED', 'only GET and POST are sent to the model endpoint');
  const below = url.pathname.slice(base.pathname.replace(/\/+$/, '').length).replace(/^\//, '');
  if (!operationAllowed(operations, method, below.split('/'))) {
    throw new Refusal('URL_NOT_ALLOWED', `${method} ${below || '(the base itself)'} is not an operation the model endpoint is used for (LLM_OPERATIONS: ${describeModelOperations(operations)})`);
  }

  const body = msg.body ?? null;
  if (body !== null && !(body instanceof Uint8Array)) throw new Refusal('BAD_REQUEST', 'body must be bytes');
  if (body && body.byteLength > MAX_MODEL_REQUEST_BYTES) throw new Refusal('BODY_TOO_LARGE', `the request body is ${body.byteLength} bytes; at most ${MAX_MODEL_REQUEST_BYTES}`);
  if (body && method === 'GET') throw new Refusal('BAD_REQUEST', 'a GET request has no body');

  if (!Array.isArray(msg.headers) || msg.headers.length > MAX_HEADERS) throw new Refusal('BAD_REQUEST', `headers must be at most ${MAX_HEADERS} [name, value] pairs`);
  const headers = new Headers();
  let headerBytes = 0;
  for (const pair of msg.headers as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') throw new Refusal('BAD_REQUEST', 'headers must be [name, value] string pairs');
    headerBytes += pair[0].length + pair[1].length;
    if (headerBytes > MAX_HEADER_BYTES) throw new Refusal('BAD_REQUEST', `headers may hold at most ${MAX_HEADER_BYTES} bytes`);
    const name = pair[0].toLowerCase();
    if (DROPPED_REQUEST_HEADERS.has(name) || name.startsWith('proxy-')) continue;
    try {
      headers.append(name, pair[1]);
    } catch {
      throw new Refusal('BAD_REQUEST', 'a header name or value is invalid');
    }
  }
  if (authorization) headers.set('authorization', authorization);
  // redirect 'error': a redirect would carry the key to wherever the endpoint (or someone posing as it) points.
  return { url: url.href, init: { method, headers, body: body as Uint8Array<ArrayBuffer> | null, redirect: 'error', credentials: 'omit', cache: 'no-store' } };
}

/**
 * The request's URL when it is under the base: same scheme, host and port, no credentials, and a path equal to
 * the base path or below it, compared after parsing (so `..` segments, `%2e%2e`, `/v1@evil`, `/v1evil`, other
 * ports and schemes all fail). Encoded slashes, backslashes and dots are refused outright: servers decode them
 * differently.
 */
export function allowedUrl(raw: string, base: URL): URL | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.protocol !== base.protocol || url.hostname !== base.hostname || url.port !== base.port) return null;
  if (url.username || url.password) return null;
  if (/%2e|%2f|%5c/i.test(url.pathname)) return null;
  const basePath = base.pathname.replace(/\/+$/, '');
  if (url.pathname !== basePath && !url.pathname.startsWith(`${basePath}/`)) return null;
  url.hash = '';
  return url;
}

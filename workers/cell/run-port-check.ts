/**
 * What a run's port may carry from its worker, checked by the cell before anything reaches the front. The port is
 * the worker runtime's channel, but agent code can get hold of it: inside the port's 'message' callback (an
 * AbortSignal listener runs there when the cell asks the run to stop) async_hooks' executionAsyncResource() is
 * the port, and a hook's `init` is handed every port the thread receives (workers/worker/async-hooks-guards.ts
 * hands out stand-ins instead; this is the wall behind it). So every message is checked here as if agent code
 * wrote it: the worker's own checks (ctx.emit's, the outcome's) are repeated, nothing the front turns into
 * a row, an event, a log field or a metric label is taken on the worker's word.
 *
 * A message that fails is dropped and the run's report names the wall `port`; its worker is retired
 * (`invalid_message`), since code in it spoke for the runtime.
 */
import type { RunLimits, RunOutcome, RunReport } from '../../protocol/cell-messages.js';
import { LEAK_KINDS, RECYCLE_REASONS, WORKER_WALLS } from '../../protocol/cell-messages.js';
import { isAgentEventType, payloadProblem } from '../../protocol/agent-event-shapes.js';
import { MAX_ARGS, MAX_SQL_CHARS } from '../../protocol/db-messages.js';
import { ERROR_CODES, MAX_ERROR_MESSAGE } from '../../protocol/errors.js';
import { checkResult } from '../../protocol/result-check.js';
import { MAX_OUTPUT_DEPTH, nestsDeeperThan } from '../../protocol/json-nesting.js';
import type { AgentEvent, JsonObject } from '../../protocol/events.js';
import { REFUSAL_REASONS, type WorkerStats, type WorkerToCell } from '../../protocol/worker-messages.js';

/** How far an event's timestamp may be from the cell's clock before the cell's own replaces it. */
const CLOCK_SLACK_MS = 60_000;
/** The most characters of a global's name in a report that reach the front. */
const MAX_GLOBAL_NAME = 200;
/** A report names at most this many changed globals (the worker lists far fewer; more is not a report). */
const MAX_GLOBALS = 100;
/** A db_query's string arguments: the front's gate allows less (server/store/worker-query-gate.ts); this keeps it plain data. */
const MAX_ARG_CHARS = 65_536;
/** What a model request may hold. */
const MAX_URL_CHARS = 8192;
const MAX_HEADERS = 100;
const MAX_HEADER_CHARS = 8192;
const MAX_MODEL_BODY_BYTES = 32 * 1024 * 1024;
/** A worker has one execution context and one database client at a time; its live agent instances are few. */
const MAX_CONTEXTS = 1;
const MAX_DB_CLIENTS = 1;
const MAX_AGENT_INSTANCES = 1000;

const STATUSES = new Set(['completed', 'failed', 'cancelled', 'timeout']);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isDuration = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isString = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;
const isId = (v: unknown): v is number => isCount(v);

/**
 * A db_query rebuilt from plain values only: whatever else structured clone carried (a WebAssembly.Module, a
 * SharedArrayBuffer) would be forwarded to the front's channel, where it cannot be read back (a WebAssembly.Module
 * made the front's channel throw and the front exit). The gate then checks the statement itself.
 */
function dbQuery(msg: Record<string, unknown>): Extract<WorkerToCell, { type: 'db_query' }> | null {
  const query = msg.query;
  if (!isId(msg.id) || (msg.kind !== 'query' && msg.kind !== 'execute') || !isObject(query) || !isString(query.sql, MAX_SQL_CHARS)) return null;
  const { args, argTypes } = query;
  if (!Array.isArray(args) || !Array.isArray(argTypes) || args.length > MAX_ARGS || argTypes.length > MAX_ARGS) return null;
  const plainArgs: unknown[] = [];
  for (const a of args) {
    const ok = a === null || typeof a === 'boolean' || typeof a === 'bigint' || (typeof a === 'number' && Number.isFinite(a)) || isString(a, MAX_ARG_CHARS);
    if (!ok) return null;
    plainArgs.push(a);
  }
  const plainTypes: { scalarType: string; dbType?: string | null; arity: string }[] = [];
  for (const t of argTypes) {
    if (!isObject(t) || !isString(t.scalarType, 32) || !isString(t.arity, 16) || !(t.dbType === undefined || t.dbType === null || isString(t.dbType, 64))) return null;
    plainTypes.push({ scalarType: t.scalarType, arity: t.arity, ...(t.dbType === undefined ? {} : { dbType: t.dbType as string | null }) });
  }
  return { type: 'db_query', id: msg.id, kind: msg.kind, query: { sql: query.sql, args: plainArgs, argTypes: plainTypes } };
}

/** A model request rebuilt from plain values, its body copied (a view of shared memory could change after the check). */
function modelRequest(msg: Record<string, unknown>): Extract<WorkerToCell, { type: 'model_request' }> | null {
  const { id, url, method, headers, body } = msg;
  if (!isId(id) || !isString(url, MAX_URL_CHARS) || !isString(method, 16) || !Array.isArray(headers) || headers.length > MAX_HEADERS) return null;
  const plainHeaders: [string, string][] = [];
  for (const h of headers) {
    if (!Array.isArray(h) || h.length !== 2 || !isString(h[0], 256) || !isString(h[1], MAX_HEADER_CHARS)) return null;
    plainHeaders.push([h[0], h[1]]);
  }
  if (body !== null && !(body instanceof Uint8Array && body.byteLength <= MAX_MODEL_BODY_BYTES)) return null;
  return { type: 'model_request', id, url, method, headers: plainHeaders, body: body === null ? null : new Uint8Array(body) };
}

/** A message as the cell acts on it: an event with its payload's size in bytes (UTF-8 JSON). */
export type AdmittedMessage = Exclude<WorkerToCell, { type: 'event' }> | (Extract<WorkerToCell, { type: 'event' }> & { bytes: number });

export interface RunPortCheck {
  /** The message to act on (`started` carries the cell's clock), or null: refused. */
  admit(msg: unknown): AdmittedMessage | null;
  /** The report as the front may take it: with `port` among `refused` and the worker retired once anything was refused. */
  report(r: RunReport | null): RunReport | null;
  /** Something on the port was refused: the worker must not serve again. */
  readonly refused: boolean;
  /** A message arrived that the cell could not even read (its 'messageerror'): refused like one it read. */
  unreadable(): void;
}

/**
 * `seal`: the run's seal (protocol/worker-messages.ts), which only its runtime's `done` carries. `workerIds`: the threads alive in the cell (a `started` or `stats` names one of them); `onRefused` is told the
 * first time something is refused (the dispatcher retires the worker).
 */
export function createRunPortCheck(limits: RunLimits, seal: readonly [number, number], workerIds: () => number[], onRefused: (why: string) => void): RunPortCheck {
  /** When the cell saw the run start: an outcome's execution time is at most what the cell measured. */
  let startedAt: number | null = null;
  let startedBy: number | null = null;
  let events = 0;
  /** Payload bytes of the run's events so far (MAX_RUN_EVENT_BYTES). */
  let eventBytes = 0;
  let done = false;
  let refused = false;
  const refuse = (why: string): null => {
    if (!refused) {
      refused = true;
      onRefused(why);
    }
    return null;
  };
  const isWorker = (id: unknown): id is number => isCount(id) && (startedBy === null ? workerIds().includes(id) : id === startedBy);

  function stats(s: unknown): WorkerStats | null {
    if (!isObject(s) || !isWorker(s.workerId)) return null;
    if (!isCount(s.activeContexts) || s.activeContexts > MAX_CONTEXTS || !isCount(s.dbClients) || s.dbClients > MAX_DB_CLIENTS) return null;
    if (!isCount(s.liveAgentInstances) || s.liveAgentInstances > MAX_AGENT_INSTANCES) return null;
    return { workerId: s.workerId, activeContexts: s.activeContexts, liveAgentInstances: s.liveAgentInstances, dbClients: s.dbClients };
  }

  /** The event as it goes on, and its payload's size in bytes. */
  function event(e: unknown): { event: AgentEvent; bytes: number } | null {
    if (!isObject(e) || !isAgentEventType(e.type)) return null;
    if (payloadProblem(e.type, e.payload) !== null) return null;
    let text: string;
    try {
      text = JSON.stringify(e.payload);
    } catch {
      return null;
    }
    const bytes = Buffer.byteLength(text);
    if (bytes > limits.maxEventBytes) return null;
    const now = Date.now();
    const at = typeof e.timestamp === 'number' && Math.abs(e.timestamp - now) <= CLOCK_SLACK_MS ? e.timestamp : now;
    // What was checked is what goes on: plain JSON, whatever structured clone carried (a Map, a BigInt, a Date).
    const payload = JSON.parse(text) as JsonObject;
    if (nestsDeeperThan(payload, MAX_OUTPUT_DEPTH)) return null;
    return { event: { type: e.type, payload, timestamp: at }, bytes };
  }

  function outcome(o: unknown): RunOutcome | null {
    if (!isObject(o) || typeof o.status !== 'string' || !STATUSES.has(o.status)) return null;
    const measured = startedAt === null ? 0 : Date.now() - startedAt;
    const executionTimeMs = isDuration(o.executionTimeMs) ? Math.min(o.executionTimeMs, measured) : measured;
    if (o.status === 'completed') {
      // The worker fails a run whose result is not one (outcome.ts): a `completed` with such a result is not its.
      const checked = checkResult(o.result, limits.maxResultBytes);
      return checked.ok ? { status: 'completed', result: checked.result, executionTimeMs } : null;
    }
    const error = o.error;
    if (!isObject(error) || typeof error.code !== 'string' || !Object.hasOwn(ERROR_CODES, error.code) || typeof error.message !== 'string') return null;
    return { status: o.status as Exclude<RunOutcome['status'], 'completed'>, error: { code: error.code as keyof typeof ERROR_CODES, message: error.message.slice(0, MAX_ERROR_MESSAGE) }, executionTimeMs };
  }

  function report(r: unknown): RunReport | null {
    if (!isObject(r) || !isObject(r.leaks) || !Array.isArray(r.globals) || typeof r.contaminated !== 'boolean' || !isDuration(r.cleanupMs)) return null;
    const leaks: RunReport['leaks'] = {};
    for (const [kind, n] of Object.entries(r.leaks)) {
      if (!(LEAK_KINDS as readonly string[]).includes(kind) || !isCount(n)) return null;
      leaks[kind as keyof RunReport['leaks']] = n;
    }
    if (r.globals.length > MAX_GLOBALS || !r.globals.every((g) => typeof g === 'string' && g.length <= MAX_GLOBAL_NAME)) return null;
    if (r.recycled !== null && !(RECYCLE_REASONS as readonly unknown[]).includes(r.recycled)) return null;
    if (r.cpuDemoted !== undefined && typeof r.cpuDemoted !== 'boolean') return null;
    if (r.refused !== undefined && !(Array.isArray(r.refused) && r.refused.every((w) => (WORKER_WALLS as readonly unknown[]).includes(w)))) return null;
    return {
      leaks,
      globals: [...(r.globals as string[])],
      contaminated: r.contaminated,
      recycled: r.recycled as RunReport['recycled'],
      cleanupMs: r.cleanupMs,
      ...(r.cpuDemoted ? { cpuDemoted: true } : {}),
      ...(r.refused ? { refused: [...new Set(r.refused as string[])] } : {}),
    };
  }

  return {
    get refused() {
      return refused;
    },
    admit(raw): AdmittedMessage | null {
      if (!isObject(raw) || typeof raw.type !== 'string') return refuse('a message that is not one');
      const msg = raw as { type: string } & Record<string, unknown>;
      if (done && msg.type !== 'model_abort') return refuse(`${msg.type} after done`);
      switch (msg.type) {
        case 'started':
          if (startedBy !== null || !isWorker(msg.workerId)) return refuse('started twice, or by no worker of the cell');
          startedBy = msg.workerId;
          startedAt = Date.now();
          return { type: 'started', workerId: msg.workerId, startedAt };
        case 'event': {
          if (startedBy === null) return refuse('an event before started');
          const checked = event(msg.event);
          if (!checked) return refuse('an event ctx.emit would have refused');
          if (++events > limits.maxEventsPerRun) return refuse('more events than MAX_EVENTS_PER_RUN');
          eventBytes += checked.bytes;
          if (eventBytes > limits.maxRunEventBytes) return refuse('more event bytes than MAX_RUN_EVENT_BYTES');
          return { type: 'event', event: checked.event, bytes: checked.bytes };
        }
        case 'stats': {
          const checked = stats(msg.stats);
          return checked ? { type: 'stats', stats: checked } : refuse('stats of no worker of the run');
        }
        case 'refused':
          // Sent before the run starts, and only then: afterwards agent code may have written it.
          const reason = REFUSAL_REASONS.find((r) => r === msg.reason);
          if (startedBy !== null || !reason) return refuse('a refusal after started');
          return { type: 'refused', reason };
        case 'done': {
          const checkedOutcome = outcome(msg.outcome);
          const checkedReport = report(msg.report);
          const checkedStats = stats(msg.stats);
          if (startedBy === null || !checkedOutcome || !checkedReport || !checkedStats) return refuse('a done the worker runtime would not have sent');
          if (!Array.isArray(msg.seal) || msg.seal.length !== 2 || msg.seal[0] !== seal[0] || msg.seal[1] !== seal[1]) return refuse('a done without the run\'s seal');
          done = true;
          return { type: 'done', outcome: checkedOutcome, report: checkedReport, stats: checkedStats, seal: [seal[0], seal[1]] };
        }
        // Rebuilt from plain values; what they ask for is checked where they are handled: the broker (the model's
        // URL), the front's gate (the statement and its user).
        case 'db_query':
          return dbQuery(msg) ?? refuse('a db_query that is not plain data');
        case 'model_request':
          return modelRequest(msg) ?? refuse('a model request that is not plain data');
        case 'model_abort':
          return isId(msg.id) ? { type: 'model_abort', id: msg.id } : refuse('a model_abort of no request');
        case 'query_compiler':
          return { type: 'query_compiler' };
        default:
          return refuse(`an unknown message type ${JSON.stringify(msg.type).slice(0, 40)}`);
      }
    },
    unreadable() {
      refuse('a message the cell could not read (nested past what structured clone reads back, say)');
    },
    report(r) {
      if (!refused) return r;
      const base: RunReport = r ?? { leaks: {}, globals: [], contaminated: false, recycled: null, cleanupMs: 0 };
      return { ...base, recycled: base.recycled ?? 'invalid_message', refused: [...new Set([...(base.refused ?? []), 'port'])] };
    },
  };
}

/**
 * Where a run gets its context: an immutable UserExecutionContext built for this run only, from the
 * assignment the front persisted. Released (emit and db refuse) the moment the run ends.
 */
import type { MessagePort } from 'node:worker_threads';
import pino, { type Logger } from 'pino';
import type { Db } from '../../prisma/client-type.js';
import { LOG_BURST_SECONDS, type AgentSettings, type RunAssignment, type RunLimits } from '../../protocol/cell-messages.js';
import { inputTextOf } from '../../protocol/agent-input.js';
import { createByteBucket } from '../../protocol/byte-bucket.js';
import { jsonBytesWithin } from '../../protocol/json-size.js';
import { deepFreeze } from '../../protocol/deep-freeze.js';
import type { AgentLogger, UserExecutionContext } from '../agent-contract.js';
import { createRunLlm } from '../llm/run-llm.js';
import { createRunEmitter, type LimitExceededError, type RunEmitter } from './run-emitter.js';
import { createScopedDb } from './scoped-db.js';

export interface ExecutionContextHandle {
  ctx: UserExecutionContext;
  emitter: RunEmitter;
  release(): void;
}

export function createExecutionContext(deps: {
  run: RunAssignment;
  port: MessagePort;
  /** The cell's count of this run's events it has read (protocol/worker-messages.ts, WorkerTask). */
  eventsTaken: Int32Array;
  signal: AbortSignal;
  prisma: () => Db;
  limits: RunLimits;
  log: Logger;
  settings: AgentSettings;
  /** The run's model fetch, through the cell's broker (no key in the worker). */
  modelFetch: typeof fetch;
  onViolation: (err: LimitExceededError) => void;
  /** The run queried ctx.db (the worker's client connects at its first query). */
  onDbQuery?: () => void;
}): ExecutionContextHandle {
  const { run } = deps;
  const emitter = createRunEmitter(deps.port, deps.limits, deps.onViolation, deps.eventsTaken);
  const scoped = createScopedDb(deps.prisma, run.userId, run.threadId, deps.onDbQuery);
  const { log, release: releaseLog } = agentLogger(deps.log, deps.limits.logBytesPerSecond);
  const emit = (type: unknown, payload: unknown) => emitter.emit(type, payload);
  const input = deepFreeze(structuredClone(run.input));
  const ctx: UserExecutionContext = Object.freeze({
    userId: run.userId,
    threadId: run.threadId,
    runId: run.runId,
    requestId: run.requestId,
    agentName: run.agentName,
    attempt: run.attempt,
    input,
    signal: deps.signal,
    emit,
    db: scoped.db,
    log,
    settings: deps.settings,
    scratchDir: run.scratchDir,
    llm: createRunLlm({ settings: deps.settings, signal: deps.signal, emit, db: scoped.db, log, inputText: inputTextOf(input), modelFetch: deps.modelFetch }),
  }) as UserExecutionContext;
  return {
    ctx,
    emitter,
    release() {
      emitter.release();
      scoped.release();
      releaseLog();
    },
  };
}

/**
 * The agent's fields go under `fields`, never beside the line's own: at the top level an agent's `run_id`,
 * `user_id` or `process` would come after the worker's in the JSON and win when it is read, so a line could claim
 * another run, another user or the front (README, threat model).
 */
function agentLogger(log: Logger, bytesPerSecond: number): { log: AgentLogger; release(): void } {
  // RUN_LOG_BYTES_PER_S, as for what the run's thread prints (workers/cell/print-budget.ts): a run logging without
  // pause would write the front's log (every user's, the host's disk) at its pace. Lines that do not fit are dropped,
  // and counted once at the run's end (and said once as it starts dropping).
  const capacity = bytesPerSecond * LOG_BURST_SECONDS;
  const bucket = bytesPerSecond === 0 ? null : createByteBucket(bytesPerSecond, capacity);
  const dropped = { lines: 0, bytes: 0 };
  // Each line is counted as it is written: its message as JSON writes it (a control character in 6 bytes), its fields,
  // and the line around them (level, time, the run's bindings: ~250 bytes). Counted as the message's bytes alone, an
  // empty message cost nothing, and 10,110 lines of 260 bytes went through a budget of 8 KiB a second in a second
  // (tests/log-budget-edges.test.ts).
  const bound = (log as unknown as Record<symbol, string | undefined>)[pino.symbols.chindingsSym] ?? '';
  const lineBytes = Buffer.byteLength(`{"level":30,"time":"${new Date().toISOString()}"${bound},"from":"agent","msg":""}\n`);
  const at = (level: 'debug' | 'info' | 'warn' | 'error') => (msg: string, fields?: Record<string, unknown>) => {
    const text = String(msg);
    let written: unknown = fields;
    if (bucket && log.isLevelEnabled(level)) {
      const copy = fields === undefined ? { json: '', value: undefined } : snapshotOf(fields, capacity);
      written = copy?.value;
      const textBytes = text.length > capacity ? capacity + 1 : Buffer.byteLength(JSON.stringify(text)) - 2;
      const fieldsBytes = copy === null ? capacity + 1 : copy.json === '' ? 0 : Buffer.byteLength(copy.json) + ',"fields":'.length;
      const bytes = lineBytes + textBytes + fieldsBytes;
      if (!bucket.take(bytes)) {
        if (dropped.lines === 0) log.warn('ctx.log past RUN_LOG_BYTES_PER_S: lines that do not fit are dropped (counted at the run end)');
        dropped.lines += 1;
        dropped.bytes += bytes;
        return;
      }
    }
    log[level]({ from: 'agent', ...(written === undefined ? {} : { fields: written }) }, text);
  };
  return {
    log: Object.freeze({ debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }),
    release() {
      if (dropped.lines > 0) log.warn({ dropped_lines: dropped.lines, dropped_bytes: dropped.bytes }, 'ctx.log lines dropped past RUN_LOG_BYTES_PER_S');
    },
  };
}

/**
 * The fields as the line carries them, read once (null: over `limit`, or not JSON). The budget measures this copy and
 * pino writes it: a `toJSON`, a getter or a Proxy among the agent's fields answers each time it is read, and measured
 * on the fields themselves 8 lines of 256 KiB each went through a budget of 8 KiB a second (a few bytes when measured,
 * the whole string when written; tests/log-budget-edges.test.ts).
 */
function snapshotOf(fields: unknown, limit: number): { json: string; value: unknown } | null {
  // Plain data over the limit is refused without being stringified whole.
  if (jsonBytesWithin(fields, limit) === null) return null;
  let json: string | undefined;
  try {
    // pino would write a BigInt as a number (its fallback serializer); the copy keeps its digits as a string.
    json = JSON.stringify(fields, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return null;
  }
  if (json === undefined) return { json: '', value: undefined };
  if (Buffer.byteLength(json) > limit) return null;
  return { json, value: JSON.parse(json) as unknown };
}

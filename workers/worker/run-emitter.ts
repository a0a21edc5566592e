/**
 * ctx.emit: checks each agent event against the closed list of types and their payload shapes, enforces
 * the run's output caps, and posts it on the run's own port. Bad events throw into the agent at once,
 * with a message that says what is wrong.
 *
 * partial_result events emitted less than STREAM_INTERVAL_MS after the last one posted are merged (their
 * texts joined, up to MAX_EVENT_BYTES) and posted together at the end of the interval: a stream reaches
 * clients at most every 20 ms per run, whatever the agent does, so one run emitting in a tight loop costs
 * the front (which logs and delivers every event) a few events instead of thousands. The first event after
 * a pause goes out at once; any other event type first sends what is merged, so order is kept.
 *
 * At most EVENTS_IN_FLIGHT events are on the port unread by the cell (`eventsTaken`, which the cell counts up);
 * the rest wait here, in the run's own heap, and go as the cell reads. A run emitting without pause then holds up
 * another run's message in the cell by that many events, not by all it emitted. The run's `done` waits for them
 * (`drained`).
 */
import type { MessagePort } from 'node:worker_threads';
import type { RunLimits } from '../../protocol/cell-messages.js';
import { isAgentEventType, payloadProblem } from '../../protocol/agent-event-shapes.js';
import { AGENT_EVENT_TYPES, type AgentEventType, type JsonObject } from '../../protocol/events.js';
import { MAX_OUTPUT_DEPTH, nestsDeeperThan } from '../../protocol/json-nesting.js';
import { EVENTS_IN_FLIGHT, type WorkerToCell } from '../../protocol/worker-messages.js';

// Taken before any agent code runs: a run that replaced them could not skip the window (or stall its own done).
const atomicsLoad = Atomics.load;
const waitAsync = (Atomics as unknown as { waitAsync: (a: Int32Array, i: number, v: number) => { async: boolean; value: Promise<unknown> | string } }).waitAsync;

export class LimitExceededError extends Error {
  readonly code = 'LIMIT_EXCEEDED';
  override name = 'LimitExceededError';
}

export interface RunEmitter {
  emit(type: unknown, payload: unknown): void;
  /** After release every emit throws: a context never outlives its run. */
  release(): void;
  /** Set when a cap was crossed, even if the agent swallowed the error. */
  readonly violation: LimitExceededError | null;
  /** Resolves once every event emitted is on the port (the run's `done` must come after them). */
  drained(): Promise<void>;
}

export const STREAM_INTERVAL_MS = 20;

export function createRunEmitter(port: MessagePort, limits: RunLimits, onViolation: (err: LimitExceededError) => void, eventsTaken: Int32Array): RunEmitter {
  let count = 0;
  /** Events put on the port; the cell counts those it read in `eventsTaken`. */
  let posted = 0;
  /** Events waiting for the cell to read some of those before them, and whether a wait for that is armed. */
  const waiting: WorkerToCell[] = [];
  let armed: Promise<void> | null = null;
  /** Payload bytes emitted so far (as checked, before any merge: never less than what reaches the cell). */
  let total = 0;
  let released = false;
  let lastStreamPost = -Infinity;
  /** partial_result texts waiting for the end of the interval, their JSON size, and the first one's time. */
  let merged: { texts: string[]; bytes: number; timestamp: number } | null = null;
  let mergeTimer: NodeJS.Timeout | null = null;

  const room = () => posted - atomicsLoad(eventsTaken, 0) < EVENTS_IN_FLIGHT;
  function send(): void {
    while (waiting.length > 0 && room()) {
      posted++;
      port.postMessage(waiting.shift());
    }
    if (waiting.length > 0) arm();
  }
  /** Wakes when the cell's count moves (at once if it already has). */
  function arm(): void {
    if (armed) return;
    const wait = waitAsync(eventsTaken, 0, atomicsLoad(eventsTaken, 0));
    armed = (wait.async ? (wait.value as Promise<unknown>) : Promise.resolve()).then(() => {
      armed = null;
      send();
    });
  }
  const post = (type: AgentEventType, payload: JsonObject, timestamp: number) => {
    waiting.push({ type: 'event', event: { type, payload, timestamp } } satisfies WorkerToCell);
    send();
  };
  function flushMerged(): void {
    if (mergeTimer) clearTimeout(mergeTimer);
    mergeTimer = null;
    if (!merged) return;
    const { texts, timestamp } = merged;
    merged = null;
    lastStreamPost = Date.now();
    post('partial_result', { text: texts.join('') }, timestamp);
  }
  function stream(text: string, bytes: number, now: number): void {
    // An agent that blocks its event loop between emits never lets the timer fire: flush by the clock too.
    if (merged && now - lastStreamPost >= STREAM_INTERVAL_MS) flushMerged();
    if (!merged && now - lastStreamPost >= STREAM_INTERVAL_MS) {
      lastStreamPost = now;
      post('partial_result', { text }, now);
      return;
    }
    // {"text":""} is 11 bytes around the joined texts.
    if (merged && merged.bytes + bytes > limits.maxEventBytes - 11) flushMerged();
    if (!merged) merged = { texts: [], bytes: 0, timestamp: now };
    merged.texts.push(text);
    merged.bytes += bytes;
    mergeTimer ??= setTimeout(flushMerged, Math.max(0, lastStreamPost + STREAM_INTERVAL_MS - now));
  }
  let violation: LimitExceededError | null = null;
  const fail = (err: LimitExceededError): never => {
    if (!violation) {
      violation = err;
      onViolation(err);
    }
    throw err;
  };

  return {
    get violation() {
      return violation;
    },
    release() {
      // What the agent streamed last still goes out, before the run's end is reported.
      flushMerged();
      released = true;
    },
    async drained() {
      while (armed) await armed;
    },
    emit(type, payload) {
      if (released) throw new Error('ctx.emit called after the run ended: the execution context is released');
      if (violation) throw violation;
      if (!isAgentEventType(type)) {
        throw new TypeError(`ctx.emit: unknown event type ${JSON.stringify(type)}; expected one of ${AGENT_EVENT_TYPES.join(', ')}`);
      }
      const problem = payloadProblem(type, payload);
      if (problem) throw new TypeError(`ctx.emit(${type}): ${problem}`);
      let text: string;
      try {
        text = JSON.stringify(payload);
      } catch (err) {
        throw new TypeError(`ctx.emit(${type}): payload is not JSON-serialisable: ${(err as Error).message}`);
      }
      const bytes = Buffer.byteLength(text);
      if (bytes > limits.maxEventBytes) fail(new LimitExceededError(`event ${type} is over MAX_EVENT_BYTES (${limits.maxEventBytes})`));
      // What was checked is what is sent: the parsed JSON, never the agent's own object (a getter or a
      // toJSON could answer differently the second time).
      const checked = JSON.parse(text) as JsonObject;
      if (nestsDeeperThan(checked, MAX_OUTPUT_DEPTH)) throw new TypeError(`ctx.emit(${type}): payload nests objects and arrays deeper than ${MAX_OUTPUT_DEPTH} levels`);
      if (++count > limits.maxEventsPerRun) fail(new LimitExceededError(`run emitted more than MAX_EVENTS_PER_RUN (${limits.maxEventsPerRun}) events`));
      total += bytes;
      if (total > limits.maxRunEventBytes) fail(new LimitExceededError(`run emitted more than MAX_RUN_EVENT_BYTES (${limits.maxRunEventBytes}) bytes of events`));
      const now = Date.now();
      // Only plain {text} payloads are merged; one with more fields goes out as it is, in order.
      if (type === 'partial_result' && typeof checked.text === 'string' && Object.keys(checked).length === 1) {
        return stream(checked.text, bytes - 11, now);
      }
      flushMerged();
      post(type as AgentEventType, checked, now);
    },
  };
}

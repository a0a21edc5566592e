/**
 * The front's in-memory view of an accepted, unfinished run: who it is, where it stands, what it streamed.
 * Its event log (seq, pending writes) is the relay's (event-relay.ts), its timers the deadlines' and the
 * scheduler's, its place in the per-user counts the scheduler's.
 */
import type { AgentInput, RunAssignment } from '../../protocol/cell-messages.js';
import type { TerminalStatus } from '../../protocol/events.js';
import type { StopReason } from '../../protocol/stop-errors.js';
import type { RunRecord } from '../store/store.js';

export type RunPhase = 'queued' | 'dispatched' | 'running' | 'finished';

export interface LiveRun {
  readonly id: string;
  readonly userId: string;
  readonly threadId: string;
  readonly agentName: string;
  readonly input: AgentInput;
  readonly requestId: string;
  readonly correlationId: string | null;
  readonly acceptedAt: number;
  /** The lease of the node holding the run (several nodes: its writes name it, server/runs/shared-runs.ts); null on one node. */
  readonly owner: string | null;
  phase: RunPhase;
  /** How it ended here (finishing.ts), set with phase `finished`; its terminal write may still be under way. */
  ending: TerminalStatus | null;
  attempt: number;
  cellId: string | null;
  /** The worker running the current attempt (for log lines). */
  workerId: number | null;
  /** When the front last sent the run to a cell (queue_wait splits into waiting here and in the cell). */
  dispatchedAt: number | null;
  startedAt: number | null;
  /** When the front received the first event the agent emitted (time to first event is observed once). */
  firstEventAt: number | null;
  stopReason: StopReason | null;
  /** Set when a cell died under the run: it runs again alone, in the quarantine cell. */
  suspect: boolean;
  /** The answer streamed so far (partial_result texts of the current attempt): kept as an interrupted
   * assistant message if the run ends without completing. */
  partialText: string;
  restarts: { attempt: number; cell: string | null; reason: string }[];
  /** Walls the run's code ran into that the front saw (its worker's db statements the gate refused). */
  refused: Set<string>;
  /** The run's trace (set by the run tracer when tracing is on, server/tracing/run-tracer.ts): its log lines name it. */
  traceId: string | null;
  /** Resolves once the terminal event is persisted and delivered. */
  settled: Promise<void>;
  markSettled(): void;
}

export function newLiveRun(fields: {
  id: string;
  userId: string;
  threadId: string;
  agentName: string;
  input: AgentInput;
  requestId: string;
  correlationId: string | null;
  acceptedAt: number;
  attempt?: number;
  owner?: string | null;
}): LiveRun {
  let markSettled!: () => void;
  const settled = new Promise<void>((resolve) => (markSettled = resolve));
  return {
    ...fields,
    attempt: fields.attempt ?? 0,
    owner: fields.owner ?? null,
    phase: 'queued',
    ending: null,
    cellId: null,
    workerId: null,
    dispatchedAt: null,
    startedAt: null,
    firstEventAt: null,
    stopReason: null,
    suspect: false,
    partialText: '',
    restarts: [],
    refused: new Set(),
    traceId: null,
    settled,
    markSettled,
  };
}

/** The LiveRun of a stored run taken up again (recovered at start-up, or claimed from the shared queue). */
export function liveRunOf(r: RunRecord, owner: string | null = null): LiveRun {
  return newLiveRun({
    id: r.id,
    userId: r.userId,
    threadId: r.threadId,
    agentName: r.agentName,
    input: r.input,
    requestId: r.requestId,
    correlationId: r.correlationId,
    acceptedAt: r.queuedAt.getTime(),
    attempt: r.attempts,
    owner,
  });
}

/** The fields every log line about a run carries, so one run's lines can be found across processes. */
export function runLogFields(run: LiveRun) {
  return { run_id: run.id, user_id: run.userId, thread_id: run.threadId, cell: run.cellId, worker: run.workerId, ...(run.traceId ? { trace_id: run.traceId } : {}) };
}

export function assignment(run: LiveRun, scratchDir: string): RunAssignment {
  return {
    runId: run.id,
    userId: run.userId,
    threadId: run.threadId,
    requestId: run.requestId,
    agentName: run.agentName,
    input: run.input,
    attempt: run.attempt,
    scratchDir,
  };
}

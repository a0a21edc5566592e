/**
 * Accepting a run: the checks that refuse it (draining, unknown agent, full queue: scheduler.ts admits),
 * idempotency by correlation id, double-texting (what a new message does to its conversation's run in
 * progress), then persist-then-acknowledge: the run and its event 1 are written before the caller acknowledges, and event 1
 * is published only after the acknowledgement has gone out.
 */
import { randomUUID } from 'node:crypto';
import type { CellSupervisor } from '../cells/supervisor.js';
import type { Metrics } from '../metrics.js';
import type { AgentInput } from '../../protocol/cell-messages.js';
import { CodedError } from '../../protocol/errors.js';
import type { Accepting } from '../shared/shared-state.js';
import { CorrelationTakenError, RowMissingError } from '../store/run-writes.js';
import type { RunRecord, RunStore } from '../store/store.js';
import type { Deadlines } from './deadlines.js';
import type { EventRelay } from './event-relay.js';
import { createInputChecks } from './input-checks.js';
import { newLiveRun } from './live-run.js';
import type { LiveRuns } from './live-runs.js';
import type { Scheduler } from './scheduler.js';
import type { SharedRuns } from './shared-runs.js';
import { envelopeOf } from '../cluster/envelopes.js';
import type { RunTracer } from '../tracing/run-tracer.js';

export interface StartRunRequest {
  agent: string;
  input: AgentInput;
  threadId: string | null;
  correlationId: string | null;
  /** Double-texting policy when the thread already has a run: wait behind it, refuse, or stop it. */
  multitask: 'enqueue' | 'reject' | 'interrupt';
  /** Set by POST /v1/runs/:id/replay: the run this one replays (same user, agent, input and thread). */
  replayOf?: string | null;
}

export type StartedRun = RunRecord & { deduplicated?: boolean };

const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;

/** Refusals a duplicate gets from its twin's run, accepted by another node between its look-up and its checks. */
const refusedByTwin = (err: unknown): boolean => err instanceof CodedError && (err.code === 'THREAD_BUSY' || err.code === 'OVERLOADED');

export function createIntake(deps: {
  store: RunStore;
  relay: EventRelay;
  live: LiveRuns;
  scheduler: Scheduler;
  deadlines: Deadlines;
  cells: Pick<CellSupervisor, 'agents'>;
  /** Requests being accepted right now, by idempotency key. */
  accepting: Accepting;
  draining: () => boolean;
  metrics: Metrics;
  /** Several nodes: the shared queue (shared-runs.ts) accepts instead of this node's scheduler. */
  shared?: SharedRuns | null;
  /** Stops a run wherever it is (a double-texting interrupt of a run on another node). */
  stopRun: (userId: string, runId: string) => Promise<unknown>;
  tracer: RunTracer;
  /** USER_MAX_STORED_BYTES (0: no cap). */
  userMaxStoredBytes: number;
}) {
  const { store, relay, live, scheduler, metrics } = deps;
  const inputs = createInputChecks();

  /** Several nodes: the caps and the conversation's state are checked in the shared queue, under the user's lock. */
  async function acceptShared(userId: string, req: StartRunRequest, shared: SharedRuns): Promise<RunRecord> {
    const release = shared.admit();
    try {
      if (req.threadId && !(await store.findThread(userId, req.threadId))) throw new CodedError('NOT_FOUND', 'no such thread');
      const now = Date.now();
      const id = randomUUID();
      const threadId = req.threadId ?? randomUUID();
      const first = envelopeOf({ id, threadId, userId, agentName: req.agent }, 1, 'message_received', { correlation_id: req.correlationId }, now);
      const { record, busy } = await shared.accept(
        {
          id,
          userId,
          threadId: req.threadId,
          newThreadId: threadId,
          agentName: req.agent,
          input: req.input,
          correlationId: req.correlationId,
          requestId: req.correlationId ?? randomUUID(),
          firstEvent: first,
          replayOf: req.replayOf ?? null,
          correlationSince: now - IDEMPOTENCY_WINDOW_MS,
        },
        req.multitask,
      );
      metrics.runsAccepted.inc();
      if (req.multitask === 'interrupt') for (const other of busy) void deps.stopRun(userId, other).catch(() => undefined);
      shared.accepted(record, first);
      return record;
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * A user at its storage cap gets no new run. Read before the accept, not under its lock: runs already accepted
   * may each still add up to MAX_RUN_EVENT_BYTES and their answers, which the cap does not wait for.
   */
  async function checkStorage(userId: string): Promise<void> {
    const limit = deps.userMaxStoredBytes;
    if (limit === 0) return;
    const stored = await store.storedBytes(userId);
    if (stored >= limit) {
      metrics.runsRefused.inc({ code: 'STORAGE_QUOTA_EXCEEDED' });
      throw new CodedError(
        'STORAGE_QUOTA_EXCEEDED',
        `you store ${stored} bytes of events and messages, at or past your limit of ${limit} (USER_MAX_STORED_BYTES); delete threads you no longer need (DELETE /v1/threads/:id). Nothing was accepted`,
      );
    }
  }

  async function accept(userId: string, req: StartRunRequest): Promise<RunRecord> {
    const receivedAt = Date.now();
    if (deps.draining()) throw new CodedError('SHUTTING_DOWN', 'the server is shutting down; retry shortly', { retryAfterSeconds: 5 });
    const agent = deps.cells.agents().find((a) => a.name === req.agent);
    if (!agent) throw new CodedError('BAD_REQUEST', `unknown agent ${JSON.stringify(req.agent)}; GET /v1/agents lists the agents`);
    inputs.check(agent, req.input);
    await checkStorage(userId);
    if (deps.shared) return acceptShared(userId, req, deps.shared);
    // The queue's caps (scheduler.ts): checked and a place held at once, so the awaits below let no burst by.
    const release = await scheduler.admit(userId);
    try {
      return await persistAndQueue(userId, req, release, receivedAt);
    } finally {
      release();
    }
  }

  async function persistAndQueue(userId: string, req: StartRunRequest, release: () => void, receivedAt: number): Promise<RunRecord> {
    if (req.threadId && !(await store.findThread(userId, req.threadId))) throw new CodedError('NOT_FOUND', 'no such thread');
    if (req.threadId) {
      // Double-texting: what to do when the conversation already has a run queued or in progress.
      const busy = live.unfinishedIn(req.threadId);
      if (busy.length > 0 && req.multitask === 'reject') {
        throw new CodedError('THREAD_BUSY', `thread ${req.threadId} has a run in progress (multitask "reject")`, { retryAfterSeconds: 1 });
      }
      if (req.multitask === 'interrupt') for (const r of busy) deps.deadlines.requestStop(r, 'cancelled');
    }

    const now = Date.now();
    const run = newLiveRun({
      id: randomUUID(),
      userId,
      threadId: req.threadId ?? randomUUID(),
      agentName: req.agent,
      input: req.input,
      requestId: req.correlationId ?? randomUUID(),
      correlationId: req.correlationId,
      acceptedAt: now,
    });
    relay.open(run, 1);
    const first = relay.envelope(run, 'message_received', { correlation_id: req.correlationId }, now);
    let record: RunRecord;
    try {
      record = await store.acceptRun({
        id: run.id,
        userId,
        threadId: req.threadId,
        newThreadId: run.threadId,
        agentName: run.agentName,
        input: run.input,
        correlationId: run.correlationId,
        requestId: run.requestId,
        firstEvent: first,
        replayOf: req.replayOf ?? null,
        correlationSince: now - IDEMPOTENCY_WINDOW_MS,
      });
    } catch (err) {
      relay.forget(run); // nothing was accepted
      // The thread was deleted between the look-up above and the write.
      if (err instanceof RowMissingError) throw new CodedError('NOT_FOUND', 'no such thread');
      throw err;
    }
    metrics.runsAccepted.inc();
    // The client learns the run id (the acknowledgement, sent as this returns) before its first event;
    // every later event of the run is chained behind this one, however early its cell answers.
    relay.deliver(run, first, new Promise<void>((resolve) => setImmediate(resolve)));
    live.add(run);
    deps.tracer.accepted(run, receivedAt);
    release(); // the run now counts itself
    scheduler.enqueueAccepted(run);
    setImmediate(scheduler.pump);
    return record;
  }

  return {
    /**
     * Persists the request, then returns it; the caller acknowledges before any event is sent. With a
     * correlation id, the same id within 24 h returns the first run (`deduplicated`) instead of a new one.
     */
    async start(userId: string, req: StartRunRequest): Promise<StartedRun> {
      const correlationId = req.correlationId;
      if (!correlationId) return accept(userId, req);
      const { value, duplicate } = await deps.accepting.once<StartedRun>(`${userId}\u0000${correlationId}`, async () => {
        const since = Date.now() - IDEMPOTENCY_WINDOW_MS;
        const stored = await store.findRunByCorrelation(userId, correlationId, since);
        if (stored) return { ...stored, deduplicated: true };
        try {
          return await accept(userId, req);
        } catch (err) {
          // Accepted at the same moment by another node: that run is the answer. The database's unique index decides
          // when both wrote; when the other committed first, this one's checks under the user's lock saw its run (the
          // conversation busy, the user's last waiting place taken) and refused before writing: answered so, a retry
          // of an accepted request was told THREAD_BUSY or "nothing was accepted".
          if (!(err instanceof CorrelationTakenError || refusedByTwin(err))) throw err;
          const winner = await store.findRunByCorrelation(userId, correlationId, since);
          if (!winner) throw err;
          return { ...winner, deduplicated: true };
        }
      });
      return duplicate ? { ...value, deduplicated: true } : value;
    },
  };
}

export type Intake = ReturnType<typeof createIntake>;

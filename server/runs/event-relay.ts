/**
 * The event relay: numbers each run event, writes it to the durable log, then publishes the very same
 * envelope on the event bus (to wherever the user's sockets are). It owns each run's log state: the next seq
 * (assigned here alone, so it never resets or repeats across attempts), the events numbered but not yet
 * written, and the chain that keeps the log and the bus in seq order; events that arrive while a write is in
 * flight are written together in the next batch. The run service never touches seq or the chain.
 */
import { randomUUID } from 'node:crypto';
import type { EventBus } from '../bus/event-bus.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { ErrorBody } from '../../protocol/errors.js';
import type { EventPayloads, JsonValue, RunEventEnvelope, RunEventType, TerminalStatus } from '../../protocol/events.js';
import { FencedError } from '../store/run-writes.js';
import type { IsolationReport, RunStore } from '../store/store.js';
import { runLogFields, type LiveRun } from './live-run.js';

/** Events per write: a flooding run's backlog is written in slices, so other runs' writes share its commits. */
const MAX_BATCH = 200;
/**
 * Payload characters per write (one event over it goes alone). A node's writes go out one group commit at a time,
 * and every run's events wait for the commit before theirs: sliced by count alone, a run of 64 KiB events wrote
 * 12.8 MiB at once, three runs of one user made one 38 MiB commit, and another user's stream on the node (its
 * local sockets and, through Redis, the other nodes') waited 3.5-4 s for it (p99; 65 ms without the flood;
 * review-c). Each run has at most one write in a commit, so a commit holds at most about this much per run.
 */
const MAX_BATCH_CHARS = 1_048_576;

/**
 * The next slice of `pending`: at most MAX_BATCH events and MAX_BATCH_CHARS of payload (UTF-16 characters, as
 * JSON.stringify gives them: up to 3 bytes each in UTF-8), at least one event. A payload that does not stringify
 * (none does today: they come from JSON.parse or literals) ends the slice rather than stop the run's log.
 */
function nextBatch(pending: RunEventEnvelope[]): RunEventEnvelope[] {
  if (pending.length <= 1) return pending.splice(0, 1);
  let n = 0;
  let chars = 0;
  while (n < pending.length && n < MAX_BATCH) {
    try {
      chars += (JSON.stringify(pending[n].payload) ?? '').length;
    } catch {
      chars = Infinity;
    }
    if (n > 0 && chars > MAX_BATCH_CHARS) break;
    n++;
  }
  return pending.splice(0, n);
}

/** One run's event log, as the relay keeps it between `open` and the terminal event (or `forget`). */
export interface RunLog {
  /**
   * The run it was opened for. A run this node lost and then claimed again is a new LiveRun with the same id and a
   * new log: what the old one still has under way (a write the database then refuses, a late event) must not touch it.
   */
  run: LiveRun;
  /** The next event's seq. */
  nextSeq: number;
  /** Events numbered but not yet written; flushed in order by `chain`. */
  pending: RunEventEnvelope[];
  /** Every write and publication of the run, in order; settles when all queued so far are done. */
  chain: Promise<void>;
  /** The terminal event is numbered: nothing may follow it. */
  closed: boolean;
}

export function createEventRelay(deps: {
  store: RunStore;
  bus: Pick<EventBus, 'publish'>;
  metrics: Metrics;
  log: Logger;
  /** A write of the run was refused because this node's lease lost it (several nodes): it is not this node's any more. */
  onFenced?: (run: LiveRun) => void;
}) {
  const { store, bus, metrics, log } = deps;
  const logs = new Map<string, RunLog>();

  /** The run's log if it is still this LiveRun's (see RunLog.run). */
  function ownLog(run: LiveRun): RunLog | undefined {
    const runLog = logs.get(run.id);
    return runLog?.run === run ? runLog : undefined;
  }

  function logOf(run: LiveRun): RunLog {
    const runLog = ownLog(run);
    if (!runLog) throw new Error(`no event log is open for run ${run.id}`);
    return runLog;
  }

  function envelope<T extends RunEventType>(run: LiveRun, type: T, payload: EventPayloads[T], at = Date.now()): RunEventEnvelope<T> {
    return {
      type,
      event_id: randomUUID(),
      seq: logOf(run).nextSeq++,
      run_id: run.id,
      thread_id: run.threadId,
      user_id: run.userId,
      agent_name: run.agentName,
      timestamp: new Date(at).toISOString(),
      payload,
    };
  }

  async function flush(run: LiveRun, runLog: RunLog): Promise<void> {
    while (runLog.pending.length > 0) await flushBatch(run, nextBatch(runLog.pending));
  }

  async function flushBatch(run: LiveRun, batch: RunEventEnvelope[]): Promise<void> {
    try {
      await store.appendEvents(batch, run.owner);
    } catch (err) {
      // Only committed events are published: a socket never sees an event that a replay would not find.
      metrics.eventsDropped.inc({ reason: 'not_logged' }, batch.length);
      if (fenced(run, err)) return;
      log.error({ ...runLogFields(run), err: (err as Error).message, events: batch.length }, 'event log write failed');
      return;
    }
    for (const e of batch) bus.publish(e);
    metrics.eventsRelayed.inc(batch.length);
  }

  /** The write was refused because another node took the run over: the run is dropped here, quietly. */
  function fenced(run: LiveRun, err: unknown): boolean {
    if (!(err instanceof FencedError)) return false;
    const runLog = ownLog(run);
    if (runLog) runLog.closed = true;
    deps.onFenced?.(run);
    return true;
  }

  return {
    /** Starts the run's log: its next event is `nextSeq` (1 for a new run; after the last logged one on recovery). */
    open(run: LiveRun, nextSeq: number): RunLog {
      const runLog: RunLog = { run, nextSeq, pending: [], chain: Promise.resolve(), closed: false };
      logs.set(run.id, runLog);
      return runLog;
    },

    /** Drops the run's log state without a terminal event (its acceptance failed: there is no run). */
    forget(run: LiveRun): void {
      if (ownLog(run)) logs.delete(run.id);
    },

    envelope,

    /**
     * Numbers the event and queues it for the log and the bus. After the terminal event (a late timer or
     * message) the event is dropped and counted, not thrown: the run is over, and the front must not crash for it.
     */
    append<T extends RunEventType>(run: LiveRun, type: T, payload: EventPayloads[T], at?: number): void {
      const runLog = ownLog(run);
      if (!runLog || runLog.closed) {
        metrics.eventsDropped.inc({ reason: 'run_settled' });
        log.debug({ ...runLogFields(run), type }, 'event after the run settled; dropped');
        return;
      }
      runLog.pending.push(envelope(run, type, payload, at));
      if (runLog.pending.length === 1) runLog.chain = runLog.chain.then(() => flush(run, runLog));
    },

    /** Publishes an event that is already in the log (event 1, written with the run itself), once `after` resolves. */
    deliver(run: LiveRun, e: RunEventEnvelope, after: Promise<void>): void {
      const runLog = logOf(run);
      runLog.chain = runLog.chain.then(() => after).then(() => {
        bus.publish(e);
        metrics.eventsRelayed.inc();
      });
    },

    /** Settles once everything queued for the run so far is written (and published). */
    written(run: LiveRun): Promise<void> {
      return ownLog(run)?.chain ?? Promise.resolve();
    },

    /** Queues a side write (the run's status) behind everything logged so far, in the run's order. */
    queueWrite(run: LiveRun, write: () => Promise<void>): void {
      const runLog = logOf(run);
      runLog.chain = runLog.chain.then(write).catch((err) => {
        if (!fenced(run, err)) log.error({ ...runLogFields(run), err: (err as Error).message }, 'run write failed');
      });
    },

    /** The terminal event: written with the run's final status in one batch, always last, then published; the log closes. */
    finish(
      run: LiveRun,
      status: TerminalStatus,
      error: ErrorBody | null,
      result: JsonValue | null,
      executionTimeMs: number,
      report: IsolationReport | null,
    ): Promise<void> {
      const terminal = envelope(run, 'agent_completed', {
        status,
        success: status === 'completed',
        final_response: result,
        ...(error ? { error } : {}),
        execution_time_ms: executionTimeMs,
      });
      const runLog = logOf(run);
      runLog.closed = true;
      runLog.chain = runLog.chain
        .then(() => flush(run, runLog))
        .then(async () => {
          try {
            await store.finishRun(run.id, run.threadId, status, error, result, terminal, report, run.partialText, run.owner);
            bus.publish(terminal);
            metrics.eventsRelayed.inc();
          } catch (err) {
            metrics.eventsDropped.inc({ reason: 'not_logged' });
            if (!fenced(run, err)) log.error({ ...runLogFields(run), err: (err as Error).message }, 'terminal write failed');
          }
          if (logs.get(run.id) === runLog) logs.delete(run.id);
        });
      return runLog.chain;
    },
  };
}

export type EventRelay = ReturnType<typeof createEventRelay>;

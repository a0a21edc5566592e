/**
 * The event relay: numbers each run event, writes it to the durable log, then sends the very same envelope
 * to the user's room. Per run, writes are chained so the log and the room see events in seq order; events
 * that arrive while a write is in flight are written together in the next batch.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { ErrorBody } from '../../protocol/errors.js';
import type { EventPayloads, JsonValue, RunEventEnvelope, RunEventType, TerminalStatus } from '../../protocol/events.js';
import type { IsolationReport, RunStore } from '../store/store.js';
import { runLogFields, type LiveRun } from './live-run.js';

/** Events per write: a flooding run's backlog is written in slices, so other runs' writes share its commits. */
const MAX_BATCH = 200;

export type Broadcast = (userId: string, envelope: RunEventEnvelope) => void;

export function createEventRelay(deps: { store: RunStore; broadcast: Broadcast; metrics: Metrics; log: Logger }) {
  const { store, broadcast, metrics, log } = deps;

  function envelope<T extends RunEventType>(run: LiveRun, type: T, payload: EventPayloads[T], at = Date.now()): RunEventEnvelope<T> {
    return {
      type,
      event_id: randomUUID(),
      seq: run.nextSeq++,
      run_id: run.id,
      thread_id: run.threadId,
      user_id: run.userId,
      agent_name: run.agentName,
      timestamp: new Date(at).toISOString(),
      payload,
    };
  }

  async function flush(run: LiveRun): Promise<void> {
    while (run.pending.length > 0) await flushBatch(run, run.pending.splice(0, MAX_BATCH));
  }

  async function flushBatch(run: LiveRun, batch: RunEventEnvelope[]): Promise<void> {
    try {
      await store.appendEvents(batch);
    } catch (err) {
      log.error({ ...runLogFields(run), err: (err as Error).message, events: batch.length }, 'event log write failed');
      metrics.eventsDropped.inc({ reason: 'not_logged' }, batch.length);
    }
    for (const e of batch) broadcast(run.userId, e);
    metrics.eventsRelayed.inc(batch.length);
  }

  return {
    envelope,

    append<T extends RunEventType>(run: LiveRun, type: T, payload: EventPayloads[T], at?: number): void {
      run.pending.push(envelope(run, type, payload, at));
      if (run.pending.length === 1) run.chain = run.chain.then(() => flush(run));
    },

    /** Sends an event that is already in the log (event 1, written with the run itself), once `after` resolves. */
    deliver(run: LiveRun, e: RunEventEnvelope, after: Promise<void>): void {
      run.chain = run.chain.then(() => after).then(() => {
        broadcast(run.userId, e);
        metrics.eventsRelayed.inc();
      });
    },

    /** Queues a side write (run status) in the run's order. */
    then(run: LiveRun, write: () => Promise<void>): void {
      run.chain = run.chain.then(write).catch((err) => log.error({ ...runLogFields(run), err: (err as Error).message }, 'run write failed'));
    },

    /** The terminal event: written with the run's final status in one batch, always last, then delivered. */
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
      run.chain = run.chain
        .then(() => flush(run))
        .then(async () => {
          try {
            await store.finishRun(run.id, run.threadId, status, error, result, terminal, report, run.partialText);
          } catch (err) {
            log.error({ ...runLogFields(run), err: (err as Error).message }, 'terminal write failed');
            metrics.eventsDropped.inc({ reason: 'not_logged' });
          }
          broadcast(run.userId, terminal);
          metrics.eventsRelayed.inc();
        });
      return run.chain;
    },
  };
}

export type EventRelay = ReturnType<typeof createEventRelay>;

/**
 * Ends a run, exactly once: it leaves the scheduler and its deadlines, its isolation report is counted, the
 * 'run finished' log line is written, and the relay writes and publishes its terminal event (always last).
 * Also keeps the isolation tally the metrics read (finished runs, violations, failures, failures that
 * affected other runs).
 */
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { RunOutcome, RunReport } from '../../protocol/cell-messages.js';
import type { ErrorBody } from '../../protocol/errors.js';
import type { JsonValue, TerminalStatus } from '../../protocol/events.js';
import { stopCode, type StopReason } from '../../protocol/stop-errors.js';
import type { IsolationReport } from '../store/store.js';
import type { EventRelay } from './event-relay.js';
import { runLogFields, type LiveRun } from './live-run.js';
import type { LiveRuns } from './live-runs.js';
import type { RunTracer } from '../tracing/run-tracer.js';

export interface IsolationTally {
  finished: number;
  finishedWithViolations: number;
  failures: number;
  failuresAffectingOthers: number;
}

/** What the run's store row and GET /v1/runs/:id show of its isolation (null: nothing to say). */
export function isolationReport(run: LiveRun, report: RunReport | null): IsolationReport | null {
  const refused = [...new Set([...(report?.refused ?? []), ...run.refused])];
  if (!report && run.restarts.length === 0 && refused.length === 0) return null;
  return {
    leaks: report?.leaks ?? {},
    globals: report?.globals ?? [],
    contaminated: report?.contaminated ?? false,
    recycled: report?.recycled ?? null,
    cleanup_ms: report?.cleanupMs ?? null,
    cpu_demoted: report?.cpuDemoted ?? false,
    refused,
    restarts: run.restarts,
  };
}

export function createFinishing(deps: {
  relay: EventRelay;
  live: LiveRuns;
  metrics: Metrics;
  log: Logger;
  /** Takes the run out of the scheduler and disarms its deadlines. */
  release: (run: LiveRun) => void;
  tracer: RunTracer;
}) {
  const { relay, metrics, log } = deps;
  const tally: IsolationTally = { finished: 0, finishedWithViolations: 0, failures: 0, failuresAffectingOthers: 0 };

  function countIsolation(report: RunReport | null, error: ErrorBody | null): void {
    const violated = error?.code === 'SINGLETON_AGENT' || (report !== null && (report.contaminated || report.globals.length > 0 || Object.keys(report.leaks).length > 0));
    tally.finished++;
    if (violated) tally.finishedWithViolations++;
    if (error?.code === 'SINGLETON_AGENT') metrics.singletonReuse.inc();
    if (!report) return;
    if (report.contaminated) metrics.contamination.inc();
    if (report.globals.length > 0) metrics.globalsLeft.inc();
    for (const [kind, n] of Object.entries(report.leaks)) metrics.leakedResources.inc({ kind }, n);
    if (report.recycled) metrics.workerRecycles.inc({ reason: report.recycled });
    if (report.cpuDemoted) metrics.cpuDemoted.inc();
    for (const wall of report.refused ?? []) metrics.wallsHit.inc({ wall: wall.split(':')[0] });
    metrics.cleanupDuration.observe(report.cleanupMs / 1000);
  }

  function finish(
    run: LiveRun,
    status: TerminalStatus,
    error: ErrorBody | null,
    result: JsonValue | null,
    executionTimeMs: number,
    report: RunReport | null = null,
  ): void {
    if (run.phase === 'finished') return; // exactly one terminal event
    run.phase = 'finished';
    run.ending = status;
    deps.release(run);
    countIsolation(report, error);
    if (status === 'failed' || status === 'timeout') tally.failures++;
    metrics.runsFinished.inc({ status, code: error?.code ?? 'none' });
    if (run.startedAt !== null) metrics.runDuration.observe(executionTimeMs / 1000);
    // One line per run with its outcome, timings and what it left behind; never its input or result.
    log.info(
      {
        ...runLogFields(run),
        agent: run.agentName,
        status,
        code: error?.code,
        attempts: run.attempt,
        restarts: run.restarts.length,
        queue_wait_ms: run.startedAt === null ? null : run.startedAt - run.acceptedAt,
        // Of which waiting for a free slot in the front (the rest: the cell finding and starting a worker).
        front_wait_ms: run.dispatchedAt === null ? null : run.dispatchedAt - run.acceptedAt,
        time_to_first_event_ms: run.firstEventAt === null ? null : run.firstEventAt - run.acceptedAt,
        execution_time_ms: executionTimeMs,
        total_ms: Date.now() - run.acceptedAt,
        leaks: report?.leaks ?? null,
        globals_changed: report?.globals.length ?? null,
        recycled: report?.recycled ?? null,
        cleanup_ms: report?.cleanupMs ?? null,
      },
      'run finished',
    );
    deps.tracer.finishing(run, status, error);
    void relay.finish(run, status, error, result, executionTimeMs, isolationReport(run, report)).then(() => {
      deps.tracer.settled(run);
      deps.live.delete(run.id);
      run.markSettled();
    });
  }

  const elapsed = (run: LiveRun) => (run.startedAt === null ? 0 : Date.now() - run.startedAt);

  return {
    finish,

    /** As its cell reported it. */
    fromOutcome(run: LiveRun, outcome: RunOutcome, report: RunReport | null): void {
      if (outcome.status === 'completed') finish(run, 'completed', null, outcome.result, outcome.executionTimeMs, report);
      else finish(run, outcome.status, outcome.error, null, outcome.executionTimeMs, report);
    },

    /** Failed with `error` (the time it ran so far as its execution time). */
    failed(run: LiveRun, error: ErrorBody): void {
      finish(run, 'failed', error, null, elapsed(run));
    },

    /** Ended by a stop the front settles itself (message: protocol/stop-errors.ts). */
    stopped(run: LiveRun, reason: StopReason, message: string): void {
      finish(run, reason, { code: stopCode(reason), message }, null, elapsed(run));
    },

    /** A run failed only because another run killed its cell. */
    countFailureAffectingOthers(): void {
      tally.failuresAffectingOthers++;
    },

    tally(): IsolationTally {
      return { ...tally };
    },
  };
}

export type Finishing = ReturnType<typeof createFinishing>;

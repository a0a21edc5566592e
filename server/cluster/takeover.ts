/**
 * What becomes of the runs of a node whose lease expired (it died, or was cut off from the database past its
 * lease): the same rules as a cell's death (server/runs/cell-death.ts), with the node as the cell. A run it had
 * started runs again elsewhere if its agent is safe to repeat and it has attempts left, its log continuing
 * with `run_restarted`; otherwise it fails with WORKER_CRASHED. A run that only waited there goes back to the
 * shared queue as it was (it never started on that node: no attempt spent, nothing to say). A run whose stop was
 * asked (through another node, whose message the dead node never acted on) ends cancelled, started or not: run
 * again, it would start and only then be stopped.
 */
import { stopMessage } from '../../protocol/stop-errors.js';
import type { RunRecord } from '../store/store.js';
import type { TakeoverDecision } from './cluster-store.js';
import { endingOf, envelopeOf } from './envelopes.js';

export function takeoverRule(deps: { maxRunAttempts: number; repeatable: (agentName: string) => boolean }) {
  return (run: RunRecord, lastSeq: number, nodeId: string, stopAsked: boolean): TakeoverDecision => {
    const lost = `its node (${nodeId}) stopped renewing its lease`;
    if (stopAsked) {
      const message = stopMessage('cancelled', run.status === 'running' ? { cellEnded: lost } : 'not_started');
      return { kind: 'fail', finish: endingOf(run, lastSeq, 'cancelled', { code: 'CANCELLED', message }) };
    }
    if (run.status !== 'running') return { kind: 'requeue' };
    if (!deps.repeatable(run.agentName)) {
      return { kind: 'fail', finish: endingOf(run, lastSeq, 'failed', { code: 'WORKER_CRASHED', message: `${lost} and agent ${run.agentName} is not safe to repeat` }) };
    }
    if (run.attempts >= deps.maxRunAttempts) {
      return { kind: 'fail', finish: endingOf(run, lastSeq, 'failed', { code: 'WORKER_CRASHED', message: `${lost}; gave up after ${run.attempts} attempts` }) };
    }
    return { kind: 'rerun', event: envelopeOf(run, lastSeq + 1, 'run_restarted', { attempt: run.attempts + 1, reason: 'node_lost' }) };
  };
}

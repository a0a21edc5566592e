/**
 * The judgement of a cell death, as a pure function: given the runs that were inside the dead cell, what
 * happens to each. The run service applies the decisions (and keeps the clock, the metrics and the queues),
 * so this rule can be tested on its own, case by case.
 *
 * - Runs stopped meanwhile end as stopped.
 * - A run whose assignment never reached the cell (sent in the instant it died) is queued again as if it had
 *   never been dispatched: no suspicion, no quarantine, no attempt spent.
 * - A run the cell received but never reported started, once the dead cell's channel was read to its end, never
 *   ran agent code: a worker starts it only after the start is written to the front (workers/cell/run-dispatcher.ts).
 *   It is queued again without suspicion; the attempt stays spent, so an assignment that itself kills cells
 *   cannot go round forever. If the channel could not be read to its end, it is a suspect like the others.
 * - Every other run inside is a suspect.
 * - If this is the quarantine cell (one run at a time), or one run that had started was alone in its cell
 *   with no worker killed just before and the front did not kill the cell for wedging, that run caused it
 *   and fails with the exit's error; in a serving cell, unless another user had a worker there, idle or not: a
 *   run can leave code behind that acts after it ends, so that user may have done it (cell-exits.ts counts it
 *   among the suspects). A quarantine cell keeps no lingering workers: each serves one run (supervisor.ts). Nor
 *   when the cell ran out of descriptors (cause `descriptors`): who took them is not known.
 * - Otherwise the culprit is unknown: each suspect runs again alone in quarantine (restart), unless its agent
 *   is not safe to repeat (it fails as collateral, which counts as a failure affecting others) or it has
 *   used its attempts.
 */
import type { ErrorBody } from '../../protocol/errors.js';
import { stopMessage, type StopReason } from '../../protocol/stop-errors.js';
import type { RunPhase } from './live-run.js';

/** What the judgement reads of one run inside the dead cell. */
export interface RunInside {
  id: string;
  phase: RunPhase;
  stopReason: StopReason | null;
  attempt: number;
  agentName: string;
  /** The cell never acknowledged the assignment (it died while the message was on its way). */
  undelivered: boolean;
  /** The agent may be run again from the start (false: a cell death fails it). */
  repeatable: boolean;
}

export interface CellDeathInput {
  /** Unfinished runs the dead cell owned, in the order the cell listed them. */
  runs: RunInside[];
  quarantineCell: boolean;
  /** A worker of this cell was killed (terminated, crashed, out of memory) shortly before it died. */
  recentWorkerKill: boolean;
  /** The front killed the cell because it held a stopped run too long (the death is the front's doing). */
  killedAsWedged: boolean;
  maxRunAttempts: number;
  exit: { cause: string; error: ErrorBody };
  /** The dead cell's channel was read to its end: a run it never reported started never ran agent code. */
  startsKnown: boolean;
  /**
   * A user with none of these runs had a worker in the cell, idle or not: code its runs left behind (a callback
   * that outlives its run) may have killed the cell, so a run inside is not named on being alone (helper-69).
   */
  othersMayAct: boolean;
}

export type CellDeathDecision =
  /** End it as stopped with its stop reason. */
  | { kind: 'stopped'; runId: string; reason: StopReason; message: string }
  /**
   * Back to where it waited (quarantine if it is a suspect, else the head of its user's queue), unsuspected;
   * `attemptBack`: it never reached the cell, so the attempt is given back.
   */
  | { kind: 'requeue'; runId: string; attemptBack: boolean }
  /**
   * Fail it with this error; `collateral`: it failed only because a neighbour killed its cell; `culprit`: it
   * killed its cell (its user's runs then run in quarantine for a while: cell-killers.ts).
   */
  | { kind: 'fail'; runId: string; error: ErrorBody; collateral: boolean; culprit: boolean }
  /** Run it again, alone, in quarantine. */
  | { kind: 'restart'; runId: string; reason: string };

export interface CellDeathJudgement {
  /** In the order to apply: stopped runs, then requeued ones, then the suspects. */
  decisions: CellDeathDecision[];
  /** Some run failed only because another run killed its cell. */
  affectedOthers: boolean;
}

/**
 * The run may have run agent code in the dead cell: it had been dispatched, and the cell received it and either
 * reported it started or its channel could not be read to its end.
 */
export function ranAgentCode(r: Pick<RunInside, 'phase' | 'undelivered'>, startsKnown: boolean): boolean {
  return r.phase !== 'queued' && !(r.phase === 'dispatched' && (r.undelivered || startsKnown));
}

export function judgeCellDeath(input: CellDeathInput): CellDeathJudgement {
  const { runs, exit } = input;
  const decisions: CellDeathDecision[] = [];
  for (const run of runs) {
    if (run.stopReason) {
      decisions.push({ kind: 'stopped', runId: run.id, reason: run.stopReason, message: stopMessage(run.stopReason, { cellEnded: exit.error.message }) });
    }
  }
  // Dispatched and never reported started: known never to have run agent code if it never arrived, or if the
  // dead cell's channel was read to its end.
  const neverRan = (r: RunInside) => !r.stopReason && r.phase === 'dispatched' && (r.undelivered || input.startsKnown);
  for (const run of runs.filter((r) => neverRan(r) && r.undelivered)) decisions.push({ kind: 'requeue', runId: run.id, attemptBack: true });
  for (const run of runs.filter((r) => neverRan(r) && !r.undelivered)) {
    if (run.attempt < input.maxRunAttempts) decisions.push({ kind: 'requeue', runId: run.id, attemptBack: false });
    else decisions.push({ kind: 'fail', runId: run.id, error: { code: exit.error.code, message: `${exit.error.message}; gave up after ${run.attempt} attempts` }, collateral: false, culprit: false });
  }
  const suspects = runs.filter((r) => !r.stopReason && r.phase !== 'queued' && !neverRan(r));
  // One run that had started, alone in its cell, with no worker killed just before: it is the culprit
  // (unless the front killed the cell for wedging: then the run alone in it did not cause its death). A run
  // stopped meanwhile that had run is company too: its code may still have been running (a run can kill its
  // cell once asked to stop), so the one suspect beside it is not named on that.
  const stoppedThatRan = runs.filter((r) => r.stopReason && ranAgentCode(r, input.startsKnown));
  // A cell that ran out of descriptors does not say who took them: descriptors outlive what opened them (a retired
  // worker's, the host's whole table: ENFILE), so the run alone in a serving cell is not named on that (helper-72).
  const alone = suspects.length === 1 && stoppedThatRan.length === 0 && suspects[0].phase === 'running' && !input.recentWorkerKill && !input.killedAsWedged && input.exit.cause !== 'descriptors';
  if (input.quarantineCell || (alone && !input.othersMayAct)) {
    for (const run of suspects) decisions.push({ kind: 'fail', runId: run.id, error: exit.error, collateral: false, culprit: true });
    return { decisions, affectedOthers: false };
  }
  let affectedOthers = false;
  for (const run of suspects) {
    if (!run.repeatable) {
      affectedOthers = true;
      const error: ErrorBody = { code: 'WORKER_CRASHED', message: `the run's cell died (${exit.error.message}) and agent ${run.agentName} is not safe to repeat` };
      decisions.push({ kind: 'fail', runId: run.id, error, collateral: true, culprit: false });
    } else if (run.attempt >= input.maxRunAttempts) {
      const error: ErrorBody = { code: exit.error.code, message: `${exit.error.message}; gave up after ${run.attempt} attempts` };
      decisions.push({ kind: 'fail', runId: run.id, error, collateral: false, culprit: false });
    } else {
      decisions.push({ kind: 'restart', runId: run.id, reason: exit.cause });
    }
  }
  return { decisions, affectedOthers };
}

/**
 * A cell died: applies the judgement of cell-death.ts (a pure function) to the runs that were inside.
 * Runs stopped meanwhile end as stopped; a run whose assignment never arrived goes back where it waited; the
 * culprit fails with the cause's code; suspects run again alone in quarantine, their events continuing
 * (`run_restarted`), where the culprit kills its cell again and is named, and the bystanders complete as if
 * nothing had happened. Agents that are not safe to repeat fail instead (collateral); attempts are bounded.
 * The culprit's user is put in quarantine for a while (cell-killers.ts): its next runs run alone.
 */
import type { CellHandle } from '../cells/cell-handle.js';
import type { CellExit } from '../cells/exit-cause.js';
import type { CellSupervisor } from '../cells/supervisor.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { RunStore } from '../store/store.js';
import { judgeCellDeath, ranAgentCode } from './cell-death.js';
import { CELL_KILLER_EVIDENCE, type CellKillers, type KillerEvidence } from './cell-killers.js';
import type { Deadlines } from './deadlines.js';
import type { EventRelay } from './event-relay.js';
import type { Finishing } from './finishing.js';
import type { LiveRun } from './live-run.js';
import type { LiveRuns } from './live-runs.js';
import type { Scheduler } from './scheduler.js';

/** A worker terminated this recently may be what killed its cell (V8 can abort while it tears down). */
const RECENT_KILL_MS = 5000;

export function createCellExits(deps: {
  store: RunStore;
  relay: EventRelay;
  live: LiveRuns;
  scheduler: Scheduler;
  finishing: Finishing;
  deadlines: Deadlines;
  cells: Pick<CellSupervisor, 'agents'>;
  killers: CellKillers;
  /** A user was put in quarantine here (several nodes: the others are told). */
  onQuarantined?: (userId: string) => void;
  metrics: Metrics;
  log: Logger;
  settings: { maxRunAttempts: number; cellKillerQuarantineMs: number };
}) {
  const { store, relay, scheduler, finishing, metrics } = deps;

  function agentRepeatable(name: string): boolean {
    return deps.cells.agents().find((a) => a.name === name)?.repeatable ?? true;
  }

  /** A bystander of a cell death: not a failure. It runs again, alone, with its events continuing. */
  function restart(run: LiveRun, cell: CellHandle, reason: string): void {
    deps.deadlines.clear(run);
    run.phase = 'queued';
    run.suspect = true;
    run.partialText = '';
    run.startedAt = null;
    run.restarts.push({ attempt: run.attempt, cell: cell.id, reason });
    run.cellId = null;
    metrics.runRestarts.inc({ reason });
    relay.queueWrite(run, () => store.markRequeued(run.id, run.owner));
    relay.append(run, 'run_restarted', { attempt: run.attempt + 1, reason });
    scheduler.quarantine(run);
  }

  /** Back where it waited, unsuspected (it never ran agent code); the attempt given back if it never arrived. */
  function requeue(run: LiveRun, attemptBack: boolean): void {
    run.phase = 'queued';
    run.cellId = null;
    run.dispatchedAt = null;
    if (attemptBack) run.attempt--;
    scheduler.putBack(run);
  }

  /** The user's runs run alone in the cell killers' quarantine cell from now on (cell-killers.ts). */
  function quarantined(userId: string, evidence: KillerEvidence, fields: Record<string, unknown>): void {
    metrics.cellKillersQuarantined.inc({ evidence });
    const why = evidence === 'culprit' ? "a user's run killed its cell" : `a user's runs were suspects of ${CELL_KILLER_EVIDENCE} cell deaths in a row that named no culprit, and no other user's were`;
    deps.log.warn({ user_id: userId, evidence, quarantine_ms: deps.settings.cellKillerQuarantineMs, ...fields }, `${why}; the user's runs now run alone in the cell killers' quarantine cell`);
  }

  /** The culprit's user: in quarantine from now on (counted and logged once while it lasts). */
  function culprit(run: LiveRun, cell: CellHandle): void {
    if (deps.settings.cellKillerQuarantineMs <= 0) return;
    const already = deps.killers.has(run.userId);
    deps.killers.named(run.userId);
    deps.onQuarantined?.(run.userId);
    if (!already) quarantined(run.userId, 'culprit', { run_id: run.id, cell: cell.id });
  }

  /** A death that named no culprit: its suspects' users are evidence (cell-killers.ts). */
  function unresolved(suspects: string[], cell: CellHandle): void {
    const users = [...new Set(suspects)].filter((u) => !deps.killers.has(u));
    const userId = deps.killers.unresolvedDeath(users);
    if (!userId) return;
    deps.onQuarantined?.(userId);
    quarantined(userId, 'suspect', { cell: cell.id });
  }

  return {
    onCellExit(cell: CellHandle, exit: CellExit, runIds: string[]): void {
      metrics.cellDeaths.inc({ cause: exit.cause });
      const inside = runIds.map((id) => deps.live.get(id)).filter((r): r is LiveRun => !!r && r.phase !== 'finished' && r.cellId === cell.id);
      // Users with a worker in the cell and no run inside that ran agent code there: what their runs left behind
      // may have killed it. (A run of theirs requeued unstarted does not clear them: helper-70.)
      const ran = (r: LiveRun) => ranAgentCode({ phase: r.phase, undelivered: cell.undelivered.has(r.id) }, cell.channelDrained);
      const insideUsers = new Set(inside.filter(ran).map((r) => r.userId));
      const lingering = [...cell.userWorkers.usersWithWorkers()].filter((u) => !insideUsers.has(u));
      const { decisions, affectedOthers } = judgeCellDeath({
        runs: inside.map((r) => ({
          id: r.id,
          phase: r.phase,
          stopReason: r.stopReason,
          attempt: r.attempt,
          agentName: r.agentName,
          undelivered: cell.undelivered.has(r.id),
          repeatable: agentRepeatable(r.agentName),
        })),
        quarantineCell: cell.quarantine,
        recentWorkerKill: cell.lastWorkerKillAt !== null && Date.now() - cell.lastWorkerKillAt < RECENT_KILL_MS,
        killedAsWedged: cell.killedAsWedged,
        maxRunAttempts: deps.settings.maxRunAttempts,
        exit,
        startsKnown: cell.channelDrained,
        othersMayAct: lingering.length > 0,
      });
      const byId = new Map(inside.map((r) => [r.id, r]));
      // Stopped meanwhile, though they had run: not suspects (they have ended), but their code was in the cell.
      const stoppedThatRan = inside.filter((r) => r.stopReason && ran(r));
      for (const d of decisions) {
        const run = byId.get(d.runId)!;
        switch (d.kind) {
          case 'stopped':
            finishing.stopped(run, d.reason, d.message);
            break;
          case 'requeue':
            requeue(run, d.attemptBack);
            break;
          case 'fail':
            if (d.collateral) metrics.collateralRuns.inc();
            if (d.culprit) culprit(run, cell);
            finishing.failed(run, d.error);
            break;
          case 'restart':
            restart(run, cell, d.reason);
            break;
        }
      }
      if (affectedOthers) finishing.countFailureAffectingOthers();
      if (!decisions.some((d) => d.kind === 'fail' && d.culprit)) {
        // With the user of a stopped run the front settled and the cell still held (it was killed as wedged for it).
        // And the users with a worker there and no run inside.
        const users = [...[...decisions.filter((d) => d.kind === 'restart' || d.kind === 'fail').map((d) => byId.get(d.runId)!), ...stoppedThatRan].map((r) => r.userId), ...lingering];
        unresolved(cell.wedgedBy === null ? users : [...users, cell.wedgedBy], cell);
      }
      scheduler.pump();
    },
  };
}

export type CellExits = ReturnType<typeof createCellExits>;

/**
 * The run service's side of several nodes (REDIS_URL set): the runs of the shared queue (server/cluster/) that
 * this node claims, accepts, stops, gives back and abandons. A claimed run becomes a LiveRun held by this node's
 * lease (`owner`): its writes name the lease, and the database refuses them once the lease lost the run.
 *
 * - accept: the caps are checked in the database under the user's lock (exact cluster-wide), MAX_QUEUED_RUNS
 *   by this node's share (queue-budget.ts); event 1 is published once the acknowledgement has gone out;
 * - claim: the scheduler asks for as many runs as its cells have room for (scheduler.ts);
 * - stop: a run held here is stopped here; one waiting in the shared queue ends where the stop arrives; one
 *   held by another node is flagged in the database and that node is told (signals.ts);
 * - a run still waiting after QUEUED_NOTICE_MS hears where it stands (run_queued), written under its row lock;
 * - the lease lost: every run held here is abandoned without a word (the takeover speaks for them);
 * - drain: the runs waiting here go back to the shared queue, the lease ends.
 */
import type { EventBus } from '../bus/event-bus.js';
import type { ClusterSignals } from '../cluster/signals.js';
import type { ClusterStore, StoppedEnding } from '../cluster/cluster-store.js';
import { endingOf, envelopeOf } from '../cluster/envelopes.js';
import { createNodeLease } from '../cluster/node-lease.js';
import { createQueueBudget } from '../cluster/queue-budget.js';
import { createSweeper } from '../cluster/sweeper.js';
import { takeoverRule } from '../cluster/takeover.js';
import type { CellSupervisor } from '../cells/supervisor.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { RunEventEnvelope } from '../../protocol/events.js';
import { stopMessage } from '../../protocol/stop-errors.js';
import type { NewRun, RunRecord } from '../store/store.js';
import type { Deadlines } from './deadlines.js';
import type { EventRelay } from './event-relay.js';
import { liveRunOf, runLogFields, type LiveRun } from './live-run.js';
import type { LiveRuns } from './live-runs.js';
import type { Scheduler } from './scheduler.js';

/** A newly accepted run still waiting this long is told where it stands (`run_queued`), as on one node. */
const QUEUED_NOTICE_MS = 1000;
/** How often the notices due are written (so a notice comes 1000-1250 ms after its run was accepted). */
const NOTICE_EVERY_MS = 250;
/** How often MAX_QUEUED_RUNS's share is read again (queue-budget.ts). */
const BUDGET_EVERY_MS = 250;
/** How long a drained node waits, at most, for the database to tell whether its last give-back committed. */
const SETTLE_AT_STOP_MS = 2000;

export interface SharedRunsSettings {
  nodeId: string;
  nodeLeaseMs: number;
  maxQueuedRuns: number;
  userMaxQueuedRuns: number;
  userMaxConcurrentRuns: number;
  maxRunAttempts: number;
}

export function createSharedRuns(deps: {
  cluster: ClusterStore;
  signals: ClusterSignals;
  bus: Pick<EventBus, 'publish'>;
  relay: EventRelay;
  live: LiveRuns;
  scheduler: () => Scheduler;
  deadlines: () => Deadlines;
  cells: Pick<CellSupervisor, 'agents' | 'cells'>;
  metrics: Metrics;
  log: Logger;
  settings: SharedRunsSettings;
}) {
  const { cluster, signals, bus, relay, live, metrics, log, settings } = deps;
  /** Runs accepted here that are told where they stand if still waiting at the time given (`run_queued`). */
  const notices = new Map<string, number>();
  let noticeTimer: NodeJS.Timeout | null = null;
  let draining = false;
  /** A claim failed: if it committed before its answer was lost, this node holds runs it never heard of. */
  let claimInDoubt = false;

  /** A run whose stop was asked while this node held it, given back after all (see ClusterStore's StoppedEnding). */
  const stopped: StoppedEnding = (run, lastSeq) =>
    endingOf(run, lastSeq, 'cancelled', { code: 'CANCELLED', message: stopMessage('cancelled', run.status === 'running' ? 'front' : 'not_started') });
  /** Terminal events written by this node outside a run's own path: told to every node, counted. */
  const publishEnded = (events: RunEventEnvelope[]) => {
    for (const terminal of events) {
      bus.publish(terminal);
      metrics.runsFinished.inc({ status: 'cancelled', code: 'CANCELLED' });
    }
  };

  const lease = createNodeLease({
    store: cluster,
    stopped,
    onStoppedEnded: publishEnded,
    nodeId: settings.nodeId,
    leaseMs: settings.nodeLeaseMs,
    log,
    onLost: () => {
      metrics.leasesLost.inc();
      abandonAll();
    },
    onStopsAsked: (ids) => ids.forEach(stopHeld),
    onGained: () => deps.scheduler().pump(),
  });
  const budget = createQueueBudget({ store: cluster, maxQueuedRuns: settings.maxQueuedRuns, everyMs: BUDGET_EVERY_MS, onRefused: () => metrics.runsRefused.inc({ code: 'OVERLOADED' }) });
  const repeatable = (name: string) => deps.cells.agents().find((a) => a.name === name)?.repeatable ?? true;
  const sweeper = createSweeper({
    store: cluster,
    rule: takeoverRule({ maxRunAttempts: settings.maxRunAttempts, repeatable }),
    bus,
    log,
    everyMs: Math.max(100, Math.floor(settings.nodeLeaseMs / 5)),
    onTakenOver: (t) => {
      if (t.rerun) metrics.runRestarts.inc({ reason: 'node_lost' }, t.rerun);
      metrics.runsTakenOver.inc({ outcome: 'rerun' }, t.rerun);
      metrics.runsTakenOver.inc({ outcome: 'failed' }, t.failed);
      metrics.runsTakenOver.inc({ outcome: 'cancelled' }, t.cancelled);
      metrics.runsTakenOver.inc({ outcome: 'requeued' }, t.requeued);
      signals.nodeDied(t.nodeId);
      signals.wake();
      deps.scheduler().pump();
    },
    onSettled: (events) => {
      const ended = events.filter((e) => e.type === 'agent_completed');
      for (const e of ended) {
        const { status, error } = e.payload as { status: string; error?: { code: string } };
        metrics.runsFinished.inc({ status, code: error?.code ?? 'none' });
      }
      // A takeover or a give-back that committed put runs back in the queue: claim them.
      signals.wake();
      deps.scheduler().pump();
    },
  });

  /** A run held here whose stop was asked through another node. */
  function stopHeld(runId: string): void {
    const run = live.get(runId);
    if (run && run.phase !== 'finished') deps.deadlines().requestStop(run, 'cancelled');
  }

  /**
   * Publishes what the store's doubts settle to, as a sweep does (sweeper.settle), asking every 100 ms until none is
   * left or SETTLE_AT_STOP_MS passed, however long the database takes to answer (a half-open connection waits out the
   * pool's read timeout).
   */
  async function settleBeforeLeaving(): Promise<void> {
    const until = Date.now() + SETTLE_AT_STOP_MS;
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<null>((resolve) => (timer = setTimeout(resolve, Math.max(0, until - Date.now()), null)));
      const pending = await Promise.race([sweeper.settle(), late]);
      clearTimeout(timer);
      if (pending === null || pending === 0 || Date.now() >= until) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Forgets a run this node no longer holds, without writing or publishing anything; its cell drops it. */
  function abandon(run: LiveRun): void {
    if (run.phase === 'finished') return;
    const cell = run.cellId ? deps.cells.cells().find((c) => c.id === run.cellId) : undefined;
    if (run.phase === 'dispatched' || run.phase === 'running') cell?.send({ type: 'cancel', runId: run.id, reason: 'cancelled' });
    run.phase = 'finished';
    deps.deadlines().clear(run);
    deps.scheduler().release(run);
    relay.forget(run);
    live.delete(run.id);
    run.markSettled();
    log.warn(runLogFields(run), 'run abandoned: this node no longer holds it');
  }

  function abandonAll(): void {
    for (const run of [...live.values()]) abandon(run);
  }

  function noticeLater(record: RunRecord): void {
    notices.set(record.id, Date.now() + QUEUED_NOTICE_MS);
  }

  /**
   * The notices due, in one transaction every NOTICE_EVERY_MS rather than one per run: most runs were claimed
   * before theirs was due (a run claimed here drops its notice at once; one another node claimed is found so
   * in the database).
   */
  function sendDueNotices(): void {
    const now = Date.now();
    const due = [...notices].filter(([, at]) => at <= now).map(([id]) => id);
    if (due.length === 0) return;
    for (const id of due) notices.delete(id);
    cluster
      .noticeWaiting(due, (run, lastSeq, position) => envelopeOf(run, lastSeq + 1, 'run_queued', { position }))
      .then((events) => events.forEach((e) => bus.publish(e)))
      .catch(() => undefined);
  }

  return {
    /** Holds a place of this node's MAX_QUEUED_RUNS share, or throws OVERLOADED; the release gives it back. */
    admit(): () => void {
      budget.take();
      let held = true;
      return () => {
        if (held) budget.giveBack();
        held = false;
      };
    },

    /** Persists the run in the shared queue (user caps and a busy conversation checked there, exactly). */
    accept(run: NewRun, multitask: 'enqueue' | 'reject' | 'interrupt'): Promise<{ record: RunRecord; busy: string[] }> {
      return cluster.accept(run, { userMaxQueuedRuns: settings.userMaxQueuedRuns, rejectIfBusy: multitask === 'reject' }).catch((err) => {
        if ((err as { code?: string }).code === 'OVERLOADED') metrics.runsRefused.inc({ code: 'OVERLOADED' });
        throw err;
      });
    },

    /**
     * After the acknowledgement: event 1 to the user's sockets, its notice armed, and a claim: here when this
     * node has room (the other nodes are woken if it fills up, see claim), otherwise by the other nodes, woken.
     * Waking every node for every run would make every node claim for every run: with three nodes, three claim
     * transactions per run where one serves.
     */
    accepted(record: RunRecord, first: NewRun['firstEvent']): void {
      setImmediate(() => {
        bus.publish(first);
        metrics.eventsRelayed.inc();
        if (!deps.scheduler().pump()) signals.wake();
      });
      noticeLater(record);
    },

    /** Up to `max` runs of the shared queue, now held by this node (the scheduler dispatches them). */
    async claim(max: number): Promise<LiveRun[]> {
      const held = lease.current;
      if (held === null || draining) {
        // This node takes nothing now (no lease, or draining): the run just accepted here is the others' to claim.
        signals.wake();
        return [];
      }
      if (claimInDoubt) {
        // The scheduler claims one at a time, so every run this lease took is known here by now, except those.
        const { released, ended } = await cluster.releaseUnknown(held, [...live.values()].map((r) => r.id), stopped);
        claimInDoubt = false;
        publishEnded(ended);
        if (released > 0) log.warn({ released }, 'runs of a claim whose answer was lost are back in the queue');
      }
      const { runs: claimed, more } = await cluster.claim(held, max, settings.userMaxConcurrentRuns).catch((err: unknown) => {
        claimInDoubt = true;
        throw err;
      });
      // Full now, and runs still wait: the other nodes claim the rest. (Not on every full claim: with one free
      // worker each claim is full, and each would wake every node to claim for nothing.)
      if (claimed.length >= max && more) signals.wake();
      return claimed.map(({ record: r, lastSeq }) => {
        notices.delete(r.id);
        const run = liveRunOf(r, held);
        relay.open(run, lastSeq + 1);
        live.add(run);
        return run;
      });
    },

    /**
     * Stops a run that is not held here: one waiting in the shared queue ends now (its terminal event written
     * and published here); one another node holds is flagged and that node told. False: it had ended already.
     */
    async stopElsewhere(userId: string, runId: string): Promise<boolean> {
      const outcome = await cluster.stop(userId, runId, stopped);
      if (outcome?.kind === 'ended') {
        publishEnded([outcome.terminal]);
      } else if (outcome?.kind === 'held') {
        if (outcome.nodeId === settings.nodeId) stopHeld(runId);
        else if (outcome.nodeId) signals.stopRun(outcome.nodeId, userId, runId);
      }
      return outcome?.kind === 'ended' || outcome?.kind === 'held';
    },

    /**
     * Drain, after the grace period: each run still running whose agent is safe to repeat (and has attempts
     * left) moves: its attempt here is stopped and its late messages dropped, its log says `run_restarted`
     * (reason `node_draining`), and it goes back to the shared queue for another node. The others stay, to be
     * cancelled as on one node.
     */
    async move(runs: LiveRun[]): Promise<void> {
      const held = lease.current;
      if (held === null) return;
      await Promise.all(
        runs
          .filter((run) => repeatable(run.agentName) && run.attempt < settings.maxRunAttempts && !run.stopReason)
          .map(async (run) => {
            const cell = run.cellId ? deps.cells.cells().find((c) => c.id === run.cellId) : undefined;
            cell?.send({ type: 'cancel', runId: run.id, reason: 'cancelled' });
            deps.deadlines().clear(run);
            deps.scheduler().release(run);
            run.phase = 'finished'; // what its cell still says about this attempt is dropped
            relay.append(run, 'run_restarted', { attempt: run.attempt + 1, reason: 'node_draining' });
            // A stop asked meanwhile (it found the run moving, and did nothing) ends it instead.
            relay.queueWrite(run, () => cluster.release(held, [run.id], stopped).then(publishEnded));
            await relay.written(run);
            relay.forget(run);
            live.delete(run.id);
            run.markSettled();
            metrics.runRestarts.inc({ reason: 'node_draining' });
          }),
      );
    },

    /** The write of a run was refused: this node's lease no longer holds it. */
    fenced(run: LiveRun): void {
      abandon(run);
    },

    async start(): Promise<void> {
      noticeTimer = setInterval(sendDueNotices, NOTICE_EVERY_MS);
      noticeTimer.unref();
      signals.onWake(() => deps.scheduler().pump());
      signals.onStopRun(stopHeld);
      await lease.start();
      await budget.start();
      sweeper.start();
      void sweeper.sweep();
    },

    /** Drain: no more claims; the runs waiting here go back to the shared queue. */
    async releaseWaiting(runs: LiveRun[]): Promise<void> {
      draining = true;
      const held = lease.current;
      if (held) {
        await cluster.release(held, runs.map((r) => r.id), stopped).then(publishEnded, (err) => log.warn({ err: (err as Error).message }, 'could not give waiting runs back; they are taken over when the lease expires'));
      }
    },

    /** Stops the timers; `release`: ends the lease (drained), otherwise it expires and is taken over. */
    async stop(release: boolean): Promise<void> {
      draining = true;
      if (noticeTimer) clearInterval(noticeTimer);
      noticeTimer = null;
      notices.clear();
      sweeper.stop();
      budget.stop();
      await lease.stop(release);
      // No sweep comes after this: the endings of the drain's last give-back (deregister) whose COMMIT's answer was
      // lost are settled now, for a bounded moment, and published while the bus is still up (helper-83).
      if (release) await settleBeforeLeaving();
    },
  };
}

export type SharedRuns = ReturnType<typeof createSharedRuns>;

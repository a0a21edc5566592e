/**
 * What several nodes share through the database, beside the store (store.ts): each node's lease, the shared
 * run queue (the Run table itself) and the stops asked across nodes. PostgreSQL implements it
 * (server/store/postgresql/cluster-store.ts); SQLite is one node only and has none.
 *
 * Every write of a run held by a node carries the node's lease id (its owner), and the database refuses it once
 * that lease has lost the run (FencedError): a node that was paused or cut off past its lease cannot add an
 * event or a status to a run another node took over.
 */
import type { RunEventEnvelope } from '../../protocol/events.js';
import type { FinishedRunRow } from '../store/run-writes.js';
import type { NewRun, RunRecord } from '../store/store.js';

/** A run the database gave this node: its row and the last seq its log holds. */
export interface ClaimedRun {
  record: RunRecord;
  lastSeq: number;
}

/** What happens to a run a dead node held (server/cluster/takeover.ts decides). */
export type TakeoverDecision =
  /** It runs again elsewhere, its log continuing with this event (run_restarted). */
  | { kind: 'rerun'; event: RunEventEnvelope }
  /** It ends (not safe to repeat, or out of attempts) with this terminal write. */
  | { kind: 'fail'; finish: FinishedRunRow }
  /** It was waiting on that node (never started there, or waiting to run again): back to the queue as it is. */
  | { kind: 'requeue' };

export interface ClusterStore {
  /**
   * Starts this node's life: a new lease id, valid `leaseMs` in database time. An earlier life of the same
   * NODE_ID is expired at once (the node restarted): the next sweep takes its runs. Returns the lease id and
   * whether such an earlier life still held a live lease.
   */
  register(nodeId: string, leaseMs: number): Promise<{ lease: string; replaced: number }>;
  /**
   * Extends the lease, only while it is still valid: false means it expired (this life is over: its runs are or
   * will be taken over). Also returns the runs it holds whose stop was asked through another node.
   */
  renew(lease: string, leaseMs: number): Promise<{ alive: boolean; stopsAsked: string[] }>;
  /**
   * Ends the lease (a drained node): what it still holds goes back to the queue, untouched, except runs whose stop
   * was asked meanwhile, which end (`stopped`); returns their terminal events, to publish.
   */
  deregister(lease: string, stopped: StoppedEnding): Promise<RunEventEnvelope[]>;
  /**
   * Takes over one expired lease, if any is left and no other node is on it: every run it held gets `decide`'s
   * outcome, all in one transaction with the lease's removal, so each run is taken over exactly once. Returns
   * the node, its runs' new events (to publish), and the runs back in the queue; null when none expired.
   */
  takeOverExpired(decide: (run: RunRecord, lastSeq: number, nodeId: string, stopAsked: boolean) => TakeoverDecision): Promise<{ nodeId: string; events: RunEventEnvelope[]; requeued: number } | null>;
  /**
   * Accepts a run into the shared queue, checked under its user's lock so the checks are exact cluster-wide:
   * OVERLOADED past `userMaxQueuedRuns` waiting runs, THREAD_BUSY when `rejectIfBusy` and its conversation
   * has a run queued or running. Returns the conversation's unfinished runs (for a double-texting interrupt).
   */
  accept(run: NewRun, check: { userMaxQueuedRuns: number; rejectIfBusy: boolean }): Promise<{ record: RunRecord; busy: string[] }>;
  /**
   * Gives this lease up to `max` waiting runs: users least recently served first, each user's oldest run, only
   * while the user has fewer than `userMaxConcurrentRuns` runs held by nodes and the run's conversation has none.
   * `more`: the claim was full and a run that could start still waited once these were taken (read after the take;
   * a claim of another node not committed yet may make it true for nothing, never false while such a run waits).
   * A claim that failed may have committed (its answer lost): see `releaseUnknown`.
   */
  claim(lease: string, max: number, userMaxConcurrentRuns: number): Promise<{ runs: ClaimedRun[]; more: boolean }>;
  /**
   * Puts back in the queue the runs this lease holds but has not started, except `known`: after a claim failed, the
   * ones it took if it committed anyway, which the node never heard of (they would count against their user's cap
   * and hold their conversation until the node stopped). Those whose stop was asked meanwhile end instead
   * (`stopped`). Returns how many went back, and the terminal events written, to publish.
   */
  releaseUnknown(lease: string, known: string[], stopped: StoppedEnding): Promise<{ released: number; ended: RunEventEnvelope[] }>;
  /**
   * Writes `build`'s event for each of `runIds` still waiting in the shared queue (run_queued), in one
   * transaction; returns the events written (none for runs that left it).
   */
  noticeWaiting(runIds: string[], build: (run: RunRecord, lastSeq: number, position: number) => RunEventEnvelope): Promise<RunEventEnvelope[]>;
  /**
   * Stops a run of `userId` wherever it is: one waiting in the shared queue ends here (`build`'s terminal
   * write); one a node holds is flagged (that node stops it: `owner` says which). null: no such run.
   */
  stop(userId: string, runId: string, build: (run: RunRecord, lastSeq: number) => FinishedRunRow): Promise<{ kind: 'ended'; terminal: RunEventEnvelope } | { kind: 'held'; nodeId: string | null } | { kind: 'over' } | null>;
  /**
   * Runs this lease holds that wait on this node (drain): back to the shared queue, except those whose stop was
   * asked meanwhile, which end (`stopped`); returns their terminal events, to publish.
   */
  release(lease: string, runIds: string[], stopped: StoppedEnding): Promise<RunEventEnvelope[]>;
  /**
   * The events of this store's transactions whose COMMIT's answer was lost (a stop, a give-back, a takeover, a
   * notice: each threw), now found in the log: to publish. Those whose transaction is still in progress are asked
   * again at the next call (`pending`: how many); the others are forgotten.
   */
  settleDoubts(): Promise<{ events: RunEventEnvelope[]; pending: number }>;
  /** Runs waiting in the shared queue and live nodes now (MAX_QUEUED_RUNS's cluster-wide estimate). */
  census(): Promise<{ queued: number; nodes: number }>;
  close(): Promise<void>;
}

/**
 * The ending of a run whose stop was asked while a node held it, written when the node gives it back (it never
 * goes back to the queue, where it would start elsewhere after its stop was acknowledged).
 */
export type StoppedEnding = (run: RunRecord, lastSeq: number) => FinishedRunRow;

export { FencedError } from '../store/run-writes.js';

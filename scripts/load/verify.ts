/**
 * Isolation as a client sees it. Every run's received events are checked on their own (order, duplicates,
 * gaps up to the terminal seq, one terminal and last), and a sample is compared event by event with the
 * durable log (GET /v1/runs/:id/events) read with the owner's token.
 */
import { getJson } from './auth.js';
import type { ReceivedEvent, RunObservation, VirtualUser } from './virtual-user.js';

export interface IsolationReport {
  runs_checked: number;
  runs_checked_against_log: number;
  foreign_events: number;
  foreign_event_samples: { received_by: string; user_id: string; run_id: string; type: string }[];
  out_of_order_runs: number;
  duplicated_runs: number;
  duplicated_events: number;
  missing_runs: number;
  missing_events: number;
  terminal_faults: number;
  log_mismatch_runs: number;
  log_foreign_events: number;
  log_fetch_errors: number;
  /** Events of a user's own runs whose acknowledgement it never received (not a fault: ack timeouts). */
  unattributed_events: number;
  /** Replays the server asked for (`resync_required`, a socket too slow for live events); not a fault. */
  resyncs: number;
  /** Sum of every fault count above (target 0). */
  violations: number;
}

/**
 * Pages of the log read at most: up to 1000 events or 1 MiB each, so beyond MAX_EVENTS_PER_RUN's default of
 * 10000 events of the load's size (a log of large events may need more; the check then reports it incomplete).
 */
const MAX_LOG_PAGES = 20;
const LOG_CONCURRENCY = 8;

export async function checkIsolation(url: string, users: VirtualUser[], observations: RunObservation[], verifyLimit: number, timeoutMs: number): Promise<IsolationReport> {
  const r: IsolationReport = {
    runs_checked: 0, runs_checked_against_log: 0, foreign_events: 0, foreign_event_samples: [], out_of_order_runs: 0,
    duplicated_runs: 0, duplicated_events: 0, missing_runs: 0, missing_events: 0, terminal_faults: 0, log_mismatch_runs: 0,
    log_foreign_events: 0, log_fetch_errors: 0, unattributed_events: 0, resyncs: 0, violations: 0,
  };
  for (const u of users) {
    r.foreign_events += u.foreignEvents.length;
    for (const e of u.foreignEvents.slice(0, Math.max(0, 10 - r.foreign_event_samples.length))) {
      r.foreign_event_samples.push({ received_by: u.userId, user_id: e.user_id, run_id: e.run_id, type: e.type });
    }
    for (const list of u.unattributed.values()) r.unattributed_events += list.length;
    r.resyncs += u.resyncs;
  }

  // Runs still without a terminal are counted as unfinished elsewhere; their stream cannot be judged yet.
  const finished = observations.filter((o) => o.state === 'accepted' && o.terminalMs !== null);
  for (const obs of finished) {
    r.runs_checked++;
    const local = checkStream(obs.events);
    if (local.outOfOrder) r.out_of_order_runs++;
    if (local.duplicates > 0) r.duplicated_runs++;
    r.duplicated_events += local.duplicates;
    if (local.missing > 0) r.missing_runs++;
    r.missing_events += local.missing;
    if (local.terminalFault) r.terminal_faults++;
  }

  const token = new Map(users.map((u) => [u.userId, u.token]));
  const sample = finished.slice(0, verifyLimit);
  let next = 0;
  const worker = async () => {
    while (next < sample.length) {
      const obs = sample[next++];
      const log = await fetchLog(url, obs.runId!, token.get(obs.user)!, timeoutMs).catch(() => null);
      if (!log) {
        r.log_fetch_errors++;
        continue;
      }
      r.runs_checked_against_log++;
      r.log_foreign_events += log.filter((e) => e.user_id !== obs.user || e.run_id !== obs.runId).length;
      if (!sameEvents(log, obs.events)) r.log_mismatch_runs++;
    }
  };
  await Promise.all(Array.from({ length: LOG_CONCURRENCY }, worker));

  r.violations = r.foreign_events + r.out_of_order_runs + r.duplicated_runs + r.missing_runs + r.terminal_faults + r.log_mismatch_runs + r.log_foreign_events;
  return r;
}

/** Judges one run's stream in arrival order: seq must go 1, 2, 3 ... up to the single terminal event. */
export function checkStream(events: readonly ReceivedEvent[]): { outOfOrder: boolean; duplicates: number; missing: number; terminalFault: boolean } {
  const seqs = new Set<number>();
  const ids = new Set<string>();
  let duplicates = 0;
  let outOfOrder = false;
  let last = 0;
  for (const e of events) {
    if (seqs.has(e.seq) || ids.has(e.event_id)) duplicates++;
    else if (e.seq < last) outOfOrder = true;
    seqs.add(e.seq);
    // A lagging socket may get partial_result events merged into one envelope covering a range.
    if (typeof e.coalesced_from_seq === 'number') for (let s = e.coalesced_from_seq; s < e.seq; s++) seqs.add(s);
    ids.add(e.event_id);
    last = Math.max(last, e.seq);
  }
  const terminals = events.filter((e) => e.type === 'agent_completed');
  const terminalFault = terminals.length !== 1 || events.at(-1)?.type !== 'agent_completed';
  const top = terminals[0]?.seq ?? last;
  let missing = 0;
  for (let s = 1; s <= top; s++) if (!seqs.has(s)) missing++;
  return { outOfOrder, duplicates, missing, terminalFault };
}

/** The log, read page by page. */
async function fetchLog(url: string, runId: string, token: string, timeoutMs: number): Promise<ReceivedEvent[]> {
  const all: ReceivedEvent[] = [];
  for (let page = 0; page < MAX_LOG_PAGES; page++) {
    const after = all.at(-1)?.seq ?? 0;
    const res = await getJson(url, `/v1/runs/${encodeURIComponent(runId)}/events?after_seq=${after}&limit=1000`, token, timeoutMs);
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    const events = res.body.events as ReceivedEvent[];
    all.push(...events);
    // Pages are capped by size as well as by count (next_after_seq: null at the end).
    if (res.body.next_after_seq === null || events.length === 0) return all;
  }
  return all;
}

/** The client saw exactly the logged events (same ids at the same seqs), each once. */
/**
 * The received stream against the log: every logged event arrived as itself, or (partial_result only)
 * inside a coalesced envelope whose range covers it and which carries the range's last event.
 */
function sameEvents(log: readonly ReceivedEvent[], received: readonly ReceivedEvent[]): boolean {
  const bySeq = new Map(received.map((e) => [e.seq, e]));
  const covered = new Map<number, ReceivedEvent>();
  for (const e of received) if (typeof e.coalesced_from_seq === 'number') for (let s = e.coalesced_from_seq; s < e.seq; s++) covered.set(s, e);
  const expectedEnvelopes = log.filter((e) => !covered.has(e.seq)).length;
  if (expectedEnvelopes !== received.length) return false;
  return log.every((e) => {
    const own = bySeq.get(e.seq);
    if (own) return own.event_id === e.event_id && own.type === e.type;
    return e.type === 'partial_result' && covered.get(e.seq)?.type === 'partial_result';
  });
}

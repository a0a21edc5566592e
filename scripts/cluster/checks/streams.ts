/**
 * What the sockets received, against the log:
 * - no socket receives an event of another user's run;
 * - per socket and run, seqs strictly increase (a merged partial_result covers coalesced_from_seq..seq), and
 *   the same across a client's successive sockets (it resumes from its cursor), with no seq skipped: a socket
 *   follows a run from seq 1 or from where its client subscribed, and is told `resync_required` rather than
 *   sent past a seq it lacks (a skipped one is lost: the client only ever asks from its cursor);
 * - every envelope is the logged event with its seq (same id, type and payload; a merged one: the logged
 *   partial_results of its range, texts joined);
 * - a socket that was connected before a run was requested and still is at the end (it never dropped) received
 *   every event of that run during the workload, with no help from the final catch-up: live delivery across
 *   nodes, exactly once;
 * - a client that follows a run (started it, or received an event of it), once it has caught up from its cursor
 *   at the end, has every event of it.
 */
import { isDeepStrictEqual } from 'node:util';
import type { ClientLog, Delivery, History, LoggedEvent, SocketLog } from '../history.js';
import { placeRuns } from './placement.js';
import { eventsByRun } from './run-log.js';
import type { Violation } from './violation.js';

/** Per socket or client, at most this many findings of one kind are listed (the count says the rest). */
const MAX_REPORTS = 5;

export interface StreamStats {
  deliveries: number;
  /** (socket, run) pairs that had to be complete live, and were checked. */
  steadyPairs: number;
  /** (client, run) pairs checked complete after the catch-up. */
  followedPairs: number;
}

const firstSeqOf = (d: Delivery) => (typeof d.envelope.coalesced_from_seq === 'number' ? d.envelope.coalesced_from_seq : d.envelope.seq);

function mismatch(d: Delivery, log: Map<number, LoggedEvent> | undefined): string | null {
  const e = d.envelope;
  if (!log) return `seq ${e.seq} of a run with no logged events`;
  if (typeof e.coalesced_from_seq === 'number') {
    const parts: string[] = [];
    for (let s = e.coalesced_from_seq; s <= e.seq; s++) {
      const logged = log.get(s);
      if (!logged || logged.type !== 'partial_result') return `a merged envelope ${e.coalesced_from_seq}..${e.seq} covers seq ${s}, logged as ${logged?.type ?? 'nothing'}`;
      parts.push(String((logged.payload as { text?: unknown })?.text ?? ''));
    }
    if (e.type !== 'partial_result' || e.payload?.text !== parts.join('')) return `the merged envelope ${e.coalesced_from_seq}..${e.seq} is not the logged texts joined`;
    return null;
  }
  const logged = log.get(e.seq);
  if (!logged) return `${e.type} seq ${e.seq} was never logged (a phantom event)`;
  if (logged.type !== e.type || logged.eventId !== e.event_id) return `seq ${e.seq} arrived as ${e.type} ${e.event_id}, logged as ${logged.type} ${logged.eventId}`;
  if (!isDeepStrictEqual(logged.payload, e.payload)) return `seq ${e.seq} (${e.type}) arrived with payload ${JSON.stringify(e.payload)}, logged ${JSON.stringify(logged.payload)}`;
  return null;
}

function missingSeqs(deliveries: readonly Delivery[], last: number): number[] {
  const covered = new Set<number>();
  for (const d of deliveries) for (let s = firstSeqOf(d); s <= d.envelope.seq; s++) covered.add(s);
  const missing: number[] = [];
  for (let s = 1; s <= last; s++) if (!covered.has(s)) missing.push(s);
  return missing;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

const summarize = (seqs: number[]) => (seqs.length > 12 ? `${seqs.slice(0, 12).join(',')},… (${seqs.length})` : seqs.join(','));

export function checkStreams(h: History): { violations: Violation[]; stats: StreamStats } {
  const out: Violation[] = [];
  const stats: StreamStats = { deliveries: 0, steadyPairs: 0, followedPairs: 0 };
  const rows = new Map(h.runs.map((r) => [r.id, r]));
  const logs = new Map<string, Map<number, LoggedEvent>>();
  const lastSeq = new Map<string, number>();
  for (const [runId, list] of eventsByRun(h.events)) {
    logs.set(runId, new Map(list.map((e) => [e.seq, e])));
    lastSeq.set(runId, list.length === 0 ? 0 : list[list.length - 1].seq);
  }
  const { createdNotBefore } = placeRuns(h);

  for (const client of h.clients) {
    const counts = new Map<string, number>();
    const report = (v: Violation) => {
      const n = counts.get(v.kind) ?? 0;
      counts.set(v.kind, n + 1);
      if (n < MAX_REPORTS) out.push(v);
    };
    const clientLast = new Map<string, number>();
    for (const socket of client.sockets) {
      const where = `client ${client.id} (user ${client.userId}), socket ${socket.id} on ${socket.node}`;
      const socketLast = new Map<string, number>();
      const foreign = new Set<string>();
      for (const d of socket.received) {
        stats.deliveries++;
        const e = d.envelope;
        const owner = rows.get(e.run_id)?.userId;
        if (e.user_id !== client.userId || (owner !== undefined && owner !== client.userId)) {
          if (!foreign.has(e.run_id)) report({ kind: 'foreign_event', runId: e.run_id, where, message: `${where} received ${e.type} seq ${e.seq} of run ${e.run_id} (user ${owner ?? e.user_id})` });
          foreign.add(e.run_id);
          continue;
        }
        const first = firstSeqOf(d);
        const before = socketLast.get(e.run_id) ?? 0;
        const had = clientLast.get(e.run_id) ?? 0;
        if (!(first > before) || e.seq < first) report({ kind: 'stream_order', runId: e.run_id, where, message: `${where}: ${e.type} seq ${first === e.seq ? e.seq : `${first}..${e.seq}`} of run ${e.run_id} after seq ${before}` });
        else if (!(first > had)) report({ kind: 'stream_order', runId: e.run_id, where: `client ${client.id}`, message: `client ${client.id}: seq ${first} of run ${e.run_id} again on socket ${socket.id}, after seq ${had} on an earlier socket` });
        // The client asks only from its cursor (subscribe_run after the last seq it has): a skipped seq is lost to it.
        else if (first > had + 1) report({ kind: 'stream_gap', runId: e.run_id, where, message: `${where}: ${e.type} seq ${e.seq} of run ${e.run_id} arrived when the client had seq ${had}: seq ${had + 1}${first - 1 > had + 1 ? `..${first - 1}` : ''} skipped` });
        socketLast.set(e.run_id, Math.max(before, e.seq));
        clientLast.set(e.run_id, Math.max(clientLast.get(e.run_id) ?? 0, e.seq));
        const wrong = mismatch(d, logs.get(e.run_id));
        if (wrong) report({ kind: 'stream_mismatch', runId: e.run_id, where, message: `${where}, run ${e.run_id}: ${wrong}` });
      }
      if (socket.closedAt === null) checkSteady(client, socket, where, report, stats);
    }
    if (client.sockets.some((s) => s.closedAt === null)) checkFollowed(client, report, stats);
    for (const [kind, n] of counts) if (n > MAX_REPORTS) out.push({ kind: kind as Violation['kind'], runId: null, where: `client ${client.id}`, message: `… and ${n - MAX_REPORTS} more ${kind} findings on client ${client.id}` });
  }
  return { violations: out, stats };

  /** A socket open from before a run was requested to the end must have had all of it live. */
  function checkSteady(client: ClientLog, socket: SocketLog, where: string, report: (v: Violation) => void, s: StreamStats): void {
    const live = new Map<string, Delivery[]>();
    for (const d of socket.received) if (!d.final) push(live, d.envelope.run_id, d);
    for (const row of h.runs) {
      if (row.userId !== client.userId) continue;
      const created = createdNotBefore.get(row.id);
      if (created === undefined || created <= socket.connectedAt) continue;
      s.steadyPairs++;
      const missing = missingSeqs(live.get(row.id) ?? [], lastSeq.get(row.id) ?? 0);
      if (missing.length > 0) report({ kind: 'stream_incomplete', runId: row.id, where, message: `${where} was connected before run ${row.id} was requested and stayed, yet did not receive seq ${summarize(missing)} of ${lastSeq.get(row.id)}` });
    }
  }

  /** Every run a client follows is whole once it caught up from its cursor. */
  function checkFollowed(client: ClientLog, report: (v: Violation) => void, s: StreamStats): void {
    const all = new Map<string, Delivery[]>();
    for (const socket of client.sockets) for (const d of socket.received) push(all, d.envelope.run_id, d);
    for (const runId of client.follows) {
      if (rows.get(runId)?.userId !== client.userId) continue;
      s.followedPairs++;
      const missing = missingSeqs(all.get(runId) ?? [], lastSeq.get(runId) ?? 0);
      if (missing.length > 0) report({ kind: 'client_incomplete', runId, where: `client ${client.id}`, message: `client ${client.id} (user ${client.userId}) follows run ${runId} and, after catching up, lacks seq ${summarize(missing)} of ${lastSeq.get(runId)}` });
    }
  }
}

/**
 * Event latency within one node against across nodes. One user keeps a socket on every node of a cluster and
 * starts runs through them in turn, a few at a time; whichever node claims a run executes it and publishes its
 * events. Each of those events therefore reaches exactly one socket on the node that executed the run (within)
 * and one on every other node (across, through the event bus): the same event, the same moment, only the path
 * differs. Which node executed a run comes from that node's own `run finished` log line.
 *
 * Measured per event: envelope timestamp → arrival on each socket (wall clock, ms; the node and the bench share
 * the machine's clock), and the arrival on a socket across minus the arrival within (monotonic, this process).
 * Only the events the executing node publishes count (agent_started, the agent's events, agent_completed), not
 * message_received and run_queued, which the node that accepted the run publishes.
 */
import { getJson, userToken } from '../load/auth.js';
import { percentiles, type Percentiles } from '../load/stats.js';
import type { Cluster } from './cluster-nodes.js';
import { EventRecorder, type Arrival } from './event-recorder.js';

export interface EventLatencyReport {
  nodes: number;
  runs: number;
  /** Runs in flight at a time. */
  inflight: number;
  /** Runs by the node that executed them (its NODE_ID); a run whose log line never came is unattributed. */
  runs_by_node: Record<string, number>;
  runs_unattributed: number;
  /** Runs whose terminal event reached none of the sockets (their events are not counted). */
  runs_unheard: number;
  /** Those runs as the database has them: id, status and the types of their logged events. */
  unheard: { run_id: string; status: string | null; events: string[] }[];
  /** Events counted: those published by the executing node, of attributed runs. */
  events: number;
  /** Envelope timestamp → arrival on the socket on the executing node. */
  within_ms: Percentiles;
  /** Envelope timestamp → arrival on a socket on another node. */
  across_ms: Percentiles;
  /** For the same event: arrival across minus arrival within. */
  across_minus_within_ms: Percentiles;
  /** Events the socket on the executing node never received; (event, other socket) pairs never received. */
  missing_within: number;
  missing_across: number;
  /** Arrivals of a seq a socket had already received (exactly once is the contract). */
  duplicates: number;
  resyncs: number;
}

const FROM_EXECUTING_NODE = new Set(['agent_started', 'agent_thinking', 'tool_executing', 'tool_completed', 'partial_result', 'agent_completed']);
const RUN_TIMEOUT_MS = 30_000;
/** After the last run: the most it waits for the other sockets' copies and the log lines (it stops once all are in). */
const SETTLE_MS = 10_000;

export async function eventLatency(cluster: Cluster, opts: { runs: number; warmup: number; inflight: number }): Promise<EventLatencyReport> {
  const nodes = cluster.nodes.filter((n) => n.alive);
  const executedOn = new Map<string, string>();
  const unlisten = nodes.map((n) => n.server.onLog('run finished', (l) => l.run_id && executedOn.set(l.run_id, n.nodeId)));
  const token = await userToken(nodes[0].url, `latency-${Date.now()}`, null, 10_000);
  const sockets = await Promise.all(nodes.map((n) => EventRecorder.connect(n.url, token)));
  try {
    let next = 0;
    const measured: string[] = [];
    const total = opts.warmup + opts.runs;
    const slot = async () => {
      while (next < total) {
        const i = next++;
        const via = sockets[i % sockets.length];
        const runId = await via.start('steps', { text: `latency ${i}` });
        if (i >= opts.warmup) measured.push(runId);
        // Whichever socket hears the end first: before the bus carries events across, only the executing node's does.
        await Promise.race(sockets.map((s) => s.waitTerminal(runId, RUN_TIMEOUT_MS)));
      }
    };
    await Promise.all(Array.from({ length: opts.inflight }, slot));
    const settled = Date.now() + SETTLE_MS;
    while (Date.now() < settled && !(measured.every((r) => executedOn.has(r)) && sockets.every((s) => measured.every((r) => s.runs.get(r)?.some((a) => a.type === 'agent_completed'))))) {
      await new Promise((res) => setTimeout(res, 50));
    }
    const summary = summarize(measured, executedOn, nodes.map((n) => n.nodeId), sockets);
    const unheard = await Promise.all(summary.unheardIds.map(async (id) => {
      const page = (await getJson(nodes[0].url, `/v1/runs/${id}/events`, token, 10_000)).body;
      return { run_id: id, status: page?.status ?? null, events: ((page?.events ?? []) as { type: string }[]).map((e) => e.type) };
    }));
    const { unheardIds: _ids, ...report } = summary;
    return { ...report, unheard, inflight: opts.inflight };
  } finally {
    unlisten.forEach((u) => u());
    sockets.forEach((s) => s.close());
  }
}

function summarize(runIds: string[], executedOn: Map<string, string>, nodeIds: string[], sockets: EventRecorder[]): Omit<EventLatencyReport, 'inflight' | 'unheard'> & { unheardIds: string[] } {
  const within: number[] = [];
  const across: number[] = [];
  const diff: number[] = [];
  const byNode: Record<string, number> = Object.fromEntries(nodeIds.map((id) => [id, 0]));
  let unattributed = 0;
  const unheard: string[] = [];
  let events = 0;
  let missingWithin = 0;
  let missingAcross = 0;
  let duplicates = 0;
  for (const runId of runIds) {
    const bySocket = sockets.map((s) => firstBySeq(s.runs.get(runId) ?? []));
    duplicates += sockets.reduce((n, s) => n + (s.runs.get(runId)?.length ?? 0), 0) - bySocket.reduce((n, m) => n + m.size, 0);
    if (!bySocket.some((m) => [...m.values()].some((a) => a.type === 'agent_completed'))) unheard.push(runId);
    const node = executedOn.get(runId);
    if (node === undefined) {
      unattributed++;
      continue;
    }
    byNode[node] = (byNode[node] ?? 0) + 1;
    const local = nodeIds.indexOf(node);
    const seqs = new Set(bySocket.flatMap((m) => [...m.values()].filter((a) => FROM_EXECUTING_NODE.has(a.type)).map((a) => a.seq)));
    for (const seq of seqs) {
      events++;
      const mine = bySocket[local].get(seq);
      if (mine) within.push(mine.wallAt - mine.stampedAt);
      else missingWithin++;
      bySocket.forEach((m, i) => {
        if (i === local) return;
        const theirs = m.get(seq);
        if (!theirs) return void missingAcross++;
        across.push(theirs.wallAt - theirs.stampedAt);
        if (mine) diff.push(theirs.monoAt - mine.monoAt);
      });
    }
  }
  return {
    nodes: nodeIds.length,
    runs: runIds.length,
    runs_by_node: byNode,
    runs_unattributed: unattributed,
    runs_unheard: unheard.length,
    unheardIds: unheard,
    events,
    within_ms: percentiles(within),
    across_ms: percentiles(across),
    across_minus_within_ms: percentiles(diff),
    missing_within: missingWithin,
    missing_across: missingAcross,
    duplicates,
    resyncs: sockets.reduce((n, s) => n + s.resyncs, 0),
  };
}

function firstBySeq(arrivals: Arrival[]): Map<number, Arrival> {
  const m = new Map<number, Arrival>();
  for (const a of arrivals) if (!m.has(a.seq)) m.set(a.seq, a);
  return m;
}

/**
 * Takeover after a node's death: `rounds` times, on a cluster of 3 nodes, slow runs (the chaos agent sleeping
 * a minute) are started so that every node holds some and the victim most, the victim is SIGKILLed (front and
 * cells), and for each run it held the bench reads, in the run's event log, when `run_restarted` was written
 * (by the surviving node that took the lease over) and when the run's next `agent_started` was (on the node
 * that runs it again), both from the moment of the kill. Also when a socket of the user on a surviving node heard
 * `run_restarted` (that needs the event bus across nodes). Then every run of the round is cancelled and the
 * victim started again under its NODE_ID before the next round. The next victim is the next node.
 *
 * The contract's bound is NODE_LEASE_MS plus one sweep (NODE_LEASE_MS / 5): a node renews every NODE_LEASE_MS / 5,
 * so its lease expires 0.8-1 × NODE_LEASE_MS after the kill, and a survivor sweeps within NODE_LEASE_MS / 5.
 */
import { getJson, userToken } from '../load/auth.js';
import { metricValue } from '../load/prom.js';
import { percentiles, round as roundTo, type Percentiles } from '../load/stats.js';
import type { Cluster, ClusterNode } from './cluster-nodes.js';
import { EventRecorder } from './event-recorder.js';

export interface TakeoverSample {
  round: number;
  victim: string;
  /** Runs the victim held when it was killed (its atoll_runs_active), and those that ran again elsewhere. */
  runs_on_victim: number;
  runs_restarted: number;
  /** Per restarted run: kill → run_restarted written; kill → agent_started again; kill → heard by a socket (null: not seen). */
  restarted_ms: number[];
  agent_started_ms: (number | null)[];
  socket_ms: (number | null)[];
  /** run_restarted reasons seen (node_lost expected). */
  reasons: string[];
  /** Runs of the surviving nodes that were restarted too (expected 0). */
  survivors_restarted: number;
  /** The round's runs that did not end within the time allowed after their cancel. */
  not_cancelled: number;
}

export interface TakeoverReport {
  lease_ms: number;
  sweep_ms: number;
  /** NODE_LEASE_MS plus one sweep: the contract's bound on restarted_ms. */
  bound_ms: number;
  nodes: number;
  rounds: number;
  restarted_ms: Percentiles;
  agent_started_ms: Percentiles;
  socket_ms: Percentiles;
  /** Restarted runs whose run_restarted came later than bound_ms. */
  over_bound: number;
  samples: TakeoverSample[];
}

const SLOW = { agent: 'chaos', input: { text: 'slow', ms: 60_000 } };
/** Runs started per round on the victim and on each other node: the others keep room to run the victim's again. */
const ON_VICTIM = 2;
const ON_OTHERS = 1;
const POLL_MS = 200;
const WAIT_RUNNING_MS = 60_000;
/** After the bound, how long the bench still waits for the restarts before it writes the round down as it is. */
const GRACE_MS = 30_000;
const CANCEL_WAIT_MS = 30_000;
/** Set-ups tried before a round where the victim holds no run is written down as it is. */
const SET_UP_TRIES = 5;

export const sweepMs = (leaseMs: number) => Math.max(100, Math.floor(leaseMs / 5));

export async function takeover(cluster: Cluster, rounds: number, log: (msg: string) => void): Promise<TakeoverReport> {
  const userId = `takeover-${Date.now()}`;
  const token = await userToken(cluster.nodes[0].url, userId, null, 10_000);
  const samples: TakeoverSample[] = [];
  for (let r = 0; r < rounds; r++) {
    const victim = cluster.nodes[r % cluster.nodes.length];
    log(`takeover (NODE_LEASE_MS=${cluster.leaseMs}) ${r + 1}/${rounds}: SIGKILL of ${victim.nodeId}`);
    samples.push(await oneRound(cluster, victim, token, r));
    if (r < rounds - 1) await victim.restart();
  }
  const all = (k: 'restarted_ms' | 'agent_started_ms' | 'socket_ms') => samples.flatMap((s) => s[k]).filter((v): v is number => v !== null);
  const bound = cluster.leaseMs + sweepMs(cluster.leaseMs);
  return {
    lease_ms: cluster.leaseMs,
    sweep_ms: sweepMs(cluster.leaseMs),
    bound_ms: bound,
    nodes: cluster.nodes.length,
    rounds,
    restarted_ms: percentiles(all('restarted_ms')),
    agent_started_ms: percentiles(all('agent_started_ms')),
    socket_ms: percentiles(all('socket_ms')),
    over_bound: all('restarted_ms').filter((v) => v > bound).length,
    samples,
  };
}

interface EventView {
  type: string;
  seq: number;
  timestamp: string;
  payload: { reason?: string };
}

async function oneRound(cluster: Cluster, victim: ClusterNode, token: string, round: number): Promise<TakeoverSample> {
  const others = cluster.nodes.filter((n) => n !== victim);
  const sockets = new Map<ClusterNode, EventRecorder>();
  for (const n of cluster.nodes) sockets.set(n, await EventRecorder.connect(n.url, token));
  const runIds: string[] = [];
  const sample: TakeoverSample = { round: round + 1, victim: victim.nodeId, runs_on_victim: 0, runs_restarted: 0, restarted_ms: [], agent_started_ms: [], socket_ms: [], reasons: [], survivors_restarted: 0, not_cancelled: 0 };
  try {
    // On a starved machine the others may claim the victim's runs before it does: then the round starts over (its
    // runs cancelled), rather than adding runs, so the survivors always keep room for every run the victim holds
    // (each node has 2 threads: 2 + 1 + 1 runs on 6 threads leave the survivors exactly what the victim held).
    for (let tries = 0; ; tries++) {
      const started = await startRound(sockets, victim, others, token);
      runIds.push(...started);
      sample.runs_on_victim = metricValue(await fetch(`${victim.url}/metrics`).then((res) => res.text()), 'atoll_runs_active') ?? 0;
      if (sample.runs_on_victim > 0 || tries === SET_UP_TRIES - 1) break;
      sample.not_cancelled += await cancelAll(others[0].url, token, started);
    }

    const killedAt = victim.kill();
    const survivor = others[0].url;
    const deadline = killedAt + cluster.leaseMs + sweepMs(cluster.leaseMs) + GRACE_MS;
    const done = new Map<string, EventView[]>();
    while (Date.now() < deadline && done.size < sample.runs_on_victim) {
      for (const id of runIds.filter((id) => !done.has(id))) {
        const events = ((await getJson(survivor, `/v1/runs/${id}/events`, token, 10_000)).body?.events ?? []) as EventView[];
        const restart = events.find((e) => e.type === 'run_restarted');
        if (restart && events.some((e) => e.type === 'agent_started' && e.seq > restart.seq)) done.set(id, events);
      }
      if (done.size < sample.runs_on_victim) await new Promise((res) => setTimeout(res, POLL_MS));
    }
    // A moment for runs beyond the victim's count to show up (there should be none).
    await new Promise((res) => setTimeout(res, POLL_MS));
    for (const id of runIds.filter((id) => !done.has(id))) {
      const events = ((await getJson(survivor, `/v1/runs/${id}/events`, token, 10_000)).body?.events ?? []) as EventView[];
      if (events.some((e) => e.type === 'run_restarted')) done.set(id, events);
    }
    for (const [id, events] of done) {
      const restart = events.find((e) => e.type === 'run_restarted')!;
      const started = events.find((e) => e.type === 'agent_started' && e.seq > restart.seq);
      sample.runs_restarted++;
      sample.reasons.push(restart.payload.reason ?? '?');
      sample.restarted_ms.push(Date.parse(restart.timestamp) - killedAt);
      sample.agent_started_ms.push(started ? Date.parse(started.timestamp) - killedAt : null);
      const heard = others.map((n) => sockets.get(n)!.runs.get(id)?.find((a) => a.type === 'run_restarted')?.wallAt).filter((v): v is number => v !== undefined);
      sample.socket_ms.push(heard.length ? roundTo(Math.min(...heard) - killedAt, 1) : null);
    }
    sample.survivors_restarted = Math.max(0, sample.runs_restarted - sample.runs_on_victim);
    sample.not_cancelled += await cancelAll(survivor, token, runIds);
  } finally {
    sockets.forEach((s) => s.close());
  }
  return sample;
}

/** The round's slow runs, all running: the victim's first, so it claims them (a node claims at once what it accepts; the others look every 250 ms). */
async function startRound(sockets: Map<ClusterNode, EventRecorder>, victim: ClusterNode, others: ClusterNode[], token: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < ON_VICTIM; i++) ids.push(await sockets.get(victim)!.start(SLOW.agent, SLOW.input));
  await allRunning(others[0].url, token, ids);
  for (const n of others) for (let i = 0; i < ON_OTHERS; i++) ids.push(await sockets.get(n)!.start(SLOW.agent, SLOW.input));
  await allRunning(others[0].url, token, ids);
  return ids;
}

async function allRunning(url: string, token: string, runIds: string[]): Promise<void> {
  const deadline = Date.now() + WAIT_RUNNING_MS;
  for (;;) {
    const statuses = await Promise.all(runIds.map(async (id) => (await getJson(url, `/v1/runs/${id}`, token, 10_000)).body?.status));
    if (statuses.every((s) => s === 'running')) return;
    if (Date.now() > deadline) throw new Error(`takeover: the slow runs did not all start within ${WAIT_RUNNING_MS} ms (${statuses.join(', ')})`);
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
}

/** Cancels the round's runs through a surviving node; how many had not ended after CANCEL_WAIT_MS. */
async function cancelAll(url: string, token: string, runIds: string[]): Promise<number> {
  await Promise.all(runIds.map((id) => fetch(`${url}/v1/runs/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${token}` } }).then((res) => res.arrayBuffer())));
  const deadline = Date.now() + CANCEL_WAIT_MS;
  let open = runIds;
  while (open.length && Date.now() < deadline) {
    const statuses = await Promise.all(open.map(async (id) => [id, (await getJson(url, `/v1/runs/${id}`, token, 10_000)).body?.status] as const));
    open = statuses.filter(([, s]) => s === 'queued' || s === 'running').map(([id]) => id);
    if (open.length) await new Promise((res) => setTimeout(res, POLL_MS));
  }
  return open.length;
}

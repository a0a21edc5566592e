/**
 * A closed-loop socket.io driver for every server the bench compares (Atoll and the baselines speak the
 * same start_agent / event protocol): a few clients, a fixed number of runs in flight, a fixed total.
 */
import { performance } from 'node:perf_hooks';
import { userToken } from '../load/auth.js';
import { countBy, percentiles, type Percentiles } from '../load/stats.js';
import { VirtualUser, newCounters, newObservation, type RunObservation } from '../load/virtual-user.js';

export interface DriveResult {
  runs: number;
  completed: number;
  /** Accepted runs that ended otherwise, plus refusals, lost acks and runs with no terminal event. */
  failed: number;
  /** The failed runs by error code (refusal code, ACK_LOST, NO_TERMINAL). */
  failed_codes: Record<string, number>;
  duration_ms: number;
  runs_per_s: number;
  latency_ms: Percentiles;
  /** Accepted runs with their owner's token, to read them back (GET /v1/runs/:id); not reported. */
  run_refs: { token: string; run_id: string }[];
}

export interface Clients {
  users: VirtualUser[];
  close(): void;
}

const ACK_TIMEOUT_MS = 15_000;

/** `count` clients, one user each; with several URLs (the nodes of a cluster) they are dealt round robin over them. */
export async function connectClients(urls: string | readonly string[], count: number, auth: 'dev-login' | 'none', prefix: string): Promise<Clients> {
  const list = typeof urls === 'string' ? [urls] : urls;
  const users = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const url = list[i % list.length];
      const id = `${prefix}-${i + 1}`;
      const token = auth === 'dev-login' ? await userToken(url, id, null, ACK_TIMEOUT_MS) : 'none';
      return VirtualUser.connect(url, id, token, newCounters(), ACK_TIMEOUT_MS);
    }),
  );
  return { users, close: () => users.forEach((u) => u.close()) };
}

/** Runs `total` runs of `agent` (fewer if maxMs runs out), `inflightPerClient` at a time per client; latency is send → terminal event. */
export async function drive(
  clients: Clients,
  opts: { total: number; inflightPerClient: number; agent: string; input: Record<string, unknown>; runTimeoutMs: number; maxMs?: number },
): Promise<DriveResult> {
  const observations: RunObservation[] = [];
  let next = 0;
  const t0 = performance.now();
  // A slow design stops taking new runs at maxMs; the ones in flight still finish and count.
  const stopAt = t0 + (opts.maxMs ?? Infinity);
  const slot = async (user: VirtualUser) => {
    while (next < opts.total && performance.now() < stopAt) {
      const index = next++;
      const obs = newObservation({ phase: 'bench', user: user.userId, index, kind: 'healthy', mode: null, expectedResponse: null });
      observations.push(obs);
      await user.start(obs, opts.agent, { ...opts.input, text: `${opts.input.text ?? 'bench'} ${index}` }, ACK_TIMEOUT_MS);
      await user.waitTerminal(obs, opts.runTimeoutMs);
    }
  };
  await Promise.all(clients.users.flatMap((u) => Array.from({ length: opts.inflightPerClient }, () => slot(u))));
  const duration = performance.now() - t0;
  const tokens = new Map(clients.users.map((u) => [u.userId, u.token]));
  const completed = observations.filter((o) => o.status === 'completed');
  return {
    runs: observations.length,
    completed: completed.length,
    failed: observations.length - completed.length,
    failed_codes: countBy(
      observations.filter((o) => o.status !== 'completed'),
      (o) => o.code ?? o.refusedCode ?? (o.state === 'accepted' ? 'NO_TERMINAL' : 'ACK_LOST'),
    ),
    duration_ms: Math.round(duration),
    runs_per_s: Math.round((completed.length / (duration / 1000)) * 100) / 100,
    latency_ms: percentiles(completed.map((o) => o.terminalMs!)),
    run_refs: observations.filter((o) => o.runId !== null).map((o) => ({ token: tokens.get(o.user)!, run_id: o.runId! })),
  };
}

/** Starts `count` hold runs at once; the caller waits until all are in flight, or until all are done. */
export async function startHolds(clients: Clients, count: number, holdMs: number) {
  const observations: { user: VirtualUser; obs: RunObservation }[] = [];
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const user = clients.users[i % clients.users.length];
      const obs = newObservation({ phase: 'hold', user: user.userId, index: i, kind: 'healthy', mode: null, expectedResponse: null });
      observations.push({ user, obs });
      await user.start(obs, 'hold', { text: 'hold', ms: holdMs }, ACK_TIMEOUT_MS);
    }),
  );
  // A hold run is in flight once its agent has emitted and it has not ended.
  const holding = () => observations.filter(({ obs }) => obs.events.some((e) => e.type === 'partial_result') && obs.terminalMs === null).length;
  return {
    /** Resolves with how many were in flight together: all of them, or fewer if the time ran out. */
    async allInFlight(timeoutMs: number): Promise<number> {
      const deadline = performance.now() + timeoutMs;
      while (holding() < count && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return holding();
    },
    async finished(timeoutMs: number): Promise<void> {
      await Promise.all(observations.map(({ user, obs }) => user.waitTerminal(obs, timeoutMs)));
    },
  };
}

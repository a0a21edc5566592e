/**
 * The workload, drawn in full from the seed before anything runs: users and their clients and conversations,
 * every run (when, by whom, through which node and path, on which thread, with which multitask policy, agent,
 * correlation id, duplicate and stop), every move of a client to another node, and every fault. The execution's
 * timing varies from one run to the next; what is asked, and when, does not.
 */
import { Rand } from './rand.js';

export interface PlanOptions {
  seed: number;
  nodes: number;
  users: number;
  runs: number;
  durationMs: number;
  kills: number;
  pauses: number;
  redisRestarts: number;
  leaseMs: number;
}

export type Multitask = 'enqueue' | 'reject' | 'interrupt';

export interface UserPlan {
  id: string;
  /** Logical clients (tabs), each starting on a node slot. */
  clients: { slot: number }[];
  threads: number;
}

export interface RunPlan {
  index: number;
  atMs: number;
  user: number;
  /** socket: through the user's client `client`; http: to node slot `slot`. */
  via: 'socket' | 'http';
  client: number;
  slot: number;
  /** A thread of the user's, or a new one (socket only). */
  thread: number | 'new';
  multitask: Multitask;
  agent: 'streamer' | 'unrepeatable';
  input: Record<string, unknown>;
  correlationId: string | null;
  /** The same request again (same correlation id) through another path, `afterMs` after the first was sent. */
  duplicate: { afterMs: number; via: 'socket' | 'http'; client: number; slot: number } | null;
  /** stop_agent (socket) or POST /cancel (http) through another node, `afterMs` after the acknowledgement. */
  stop: { afterMs: number; via: 'socket' | 'http'; client: number; slot: number } | null;
}

export interface MovePlan {
  atMs: number;
  user: number;
  client: number;
  slot: number;
}

export type FaultPlan =
  | { atMs: number; kind: 'kill'; slot: number; downMs: number; newNodeId: boolean }
  | { atMs: number; kind: 'pause'; slot: number; pausedMs: number }
  | { atMs: number; kind: 'redis'; downMs: number };

export interface Plan {
  options: PlanOptions;
  users: UserPlan[];
  runs: RunPlan[];
  moves: MovePlan[];
  faults: FaultPlan[];
}

export function makePlan(options: PlanOptions): Plan {
  const rand = new Rand(options.seed);
  const slots = Array.from({ length: options.nodes }, (_, i) => i + 1);
  const users: UserPlan[] = Array.from({ length: options.users }, (_, i) => ({
    id: `u${i + 1}`,
    clients: Array.from({ length: rand.int(1, 3) }, () => ({ slot: rand.pick(slots) })),
    threads: rand.int(2, 3),
  }));
  // A few busy users carry a large share of the runs, so their caps and queues are really under pressure.
  const busy = Math.max(1, Math.ceil(options.users / 4));
  const pickUser = () => (rand.chance(0.4) ? rand.int(0, busy - 1) : rand.int(0, options.users - 1));
  const gap = options.durationMs / Math.max(1, options.runs);
  const runs: RunPlan[] = [];
  for (let index = 0; index < options.runs; index++) {
    const user = pickUser();
    const u = users[user];
    const via = rand.chance(0.7) ? 'socket' : 'http';
    const thread = via === 'socket' && rand.chance(0.1) ? 'new' : rand.int(0, u.threads - 1);
    const roll = rand.int(0, 99);
    const multitask: Multitask = thread === 'new' || roll < 70 ? 'enqueue' : roll < 85 ? 'reject' : 'interrupt';
    const unrepeatable = rand.chance(0.15);
    const correlationId = rand.chance(0.3) ? `c${index}` : null;
    const other = () => ({ via: (rand.chance(0.6) ? 'socket' : 'http') as 'socket' | 'http', client: rand.int(0, u.clients.length - 1), slot: rand.pick(slots) });
    runs.push({
      index,
      atMs: Math.round(index * gap + rand.int(0, Math.max(0, Math.floor(gap)))),
      user,
      via,
      client: rand.int(0, u.clients.length - 1),
      slot: rand.pick(slots),
      thread,
      multitask,
      agent: unrepeatable ? 'unrepeatable' : 'streamer',
      input: unrepeatable ? { text: `r${index}`, ms: rand.int(50, 400) } : { text: `r${index}`, parts: rand.int(2, 8), delay: rand.int(5, 40) },
      correlationId,
      duplicate: correlationId !== null && rand.chance(0.35) ? { afterMs: rand.int(0, 300), ...other() } : null,
      stop: rand.chance(0.08) ? { afterMs: rand.int(0, 400), ...other() } : null,
    });
  }
  // Each user's first client stays where it is (until its node goes away): its sockets are the ones that must have
  // every event live; the others move between nodes every few seconds.
  const moves: MovePlan[] = [];
  users.forEach((u, user) =>
    u.clients.forEach((_, client) => {
      if (client === 0) return;
      for (let at = rand.int(2000, 10_000); at < options.durationMs; at += rand.int(3000, 12_000)) moves.push({ atMs: at, user, client, slot: rand.pick(slots) });
    }),
  );
  moves.sort((a, b) => a.atMs - b.atMs);
  const kinds = [...Array(options.kills).fill('kill'), ...Array(options.pauses).fill('pause'), ...Array(options.redisRestarts).fill('redis')] as FaultPlan['kind'][];
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = rand.int(0, i);
    [kinds[i], kinds[j]] = [kinds[j], kinds[i]];
  }
  // Spread over the middle of the workload; the executor runs them one at a time, each only after the last is over.
  const faults: FaultPlan[] = kinds.map((kind, i) => {
    const atMs = Math.round(options.durationMs * (0.15 + (0.7 * (i + 0.5)) / kinds.length));
    if (kind === 'kill') return { atMs, kind, slot: rand.pick(slots), downMs: rand.int(300, 2500), newNodeId: rand.chance(0.3) };
    // Past the lease and one sweep, so the others take its runs over while it is frozen.
    if (kind === 'pause') return { atMs, kind, slot: rand.pick(slots), pausedMs: Math.round(options.leaseMs * 1.5) + 1000 };
    return { atMs, kind, downMs: rand.int(200, 1500) };
  });
  return { options, users, runs, moves, faults };
}

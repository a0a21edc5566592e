/**
 * Executes a plan (plan.ts) against a running cluster: clients connect to their nodes, each user's threads are
 * created, then runs are sent on schedule (socket or HTTP, duplicates with the same correlation id through
 * other nodes, stops through other nodes), clients move between nodes, and faults strike one at a time (SIGKILL
 * and restart, SIGSTOP past the lease then SIGCONT, a Redis restart). Records every request and what every
 * socket received; judging is for the checks.
 */
import type { PrivateRedis } from './redis.js';
import { ClusterClient, signToken, type NodeAddress } from './client.js';
import type { StartRequest } from './history.js';
import type { Cluster } from './nodes.js';
import type { FaultPlan, Plan, RunPlan } from './plan.js';
import { Rand } from './rand.js';

export interface FaultRecord {
  kind: FaultPlan['kind'];
  node: string | null;
  startedAt: number;
  endedAt: number;
  detail: string;
}

export interface WorkloadResult {
  requests: StartRequest[];
  clients: ClusterClient[];
  faults: FaultRecord[];
  /** Stops sent, and what they were answered. */
  stops: { runId: string; via: 'socket' | 'http'; node: string; answer: string }[];
  threads: string[][];
  /** Restarts of a killed node that failed (each tried again, up to three times). */
  startFailures: string[];
}

export interface WorkloadDeps {
  cluster: Cluster;
  plan: Plan;
  jwtSecret: string;
  /** The private Redis the nodes use, when the plan restarts it. */
  redis: PrivateRedis | null;
  ackTimeoutMs: number;
  progress: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A request's outcome until its answer (or its loss) is known. */
const IN_FLIGHT = 'in flight';

type Answer = { status: number; body: any; headers: Headers | null; error: string | null };

async function http(url: string, method: string, path: string, token: string, body: unknown, timeoutMs: number): Promise<Answer> {
  try {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed, headers: res.headers, error: null };
  } catch (err) {
    return { status: 0, body: null, headers: null, error: (err as Error).message };
  }
}

export async function runWorkload(deps: WorkloadDeps): Promise<WorkloadResult> {
  const { cluster, plan, ackTimeoutMs } = deps;
  const choices = new Rand(plan.options.seed ^ 0x5bd1e995).fork();
  const address = (slot: number): NodeAddress => ({ nodeId: cluster.node(slot).nodeId, url: cluster.url(slot) });
  const upSlots = () => cluster.slots.filter((s) => cluster.node(s).state === 'up');
  const choose = (avoid: string | null): NodeAddress | null => {
    const up = upSlots();
    if (up.length === 0) return null;
    const others = up.filter((s) => cluster.node(s).nodeId !== avoid);
    return address(choices.pick(others.length > 0 ? others : up));
  };
  /** The slot if it is up, else any node that is (what a load balancer does). */
  const reach = (slot: number) => (cluster.node(slot).state === 'up' ? address(slot) : choose(null));

  const tokens = plan.users.map((u) => signToken(deps.jwtSecret, u.id));
  const clients = plan.users.map((u, i) => u.clients.map((_, j) => new ClusterClient(`${u.id}.c${j + 1}`, u.id, tokens[i], choose, { ackTimeoutMs, connectTimeoutMs: 20_000 })));
  await Promise.all(plan.users.flatMap((u, i) => u.clients.map((c, j) => clients[i][j].connect(address(c.slot)))));

  const threads: string[][] = [];
  for (const [i, u] of plan.users.entries()) {
    const ids: string[] = [];
    for (let t = 0; t < u.threads; t++) {
      for (let tries = 0; ; tries++) {
        const node = choose(null);
        const res = node ? await http(node.url, 'POST', '/v1/threads', tokens[i], { title: `${u.id}-t${t + 1}` }, ackTimeoutMs) : null;
        if (res?.status === 201) {
          ids.push(res.body.id);
          break;
        }
        if (tries > 20) throw new Error(`could not create a thread for ${u.id}: ${res?.status} ${JSON.stringify(res?.body ?? res?.error)}`);
        await sleep(250);
      }
    }
    threads.push(ids);
  }

  const requests: StartRequest[] = [];
  const stops: WorkloadResult['stops'] = [];
  const faults: FaultRecord[] = [];
  const startFailures: string[] = [];
  let requestSeq = 0;
  const t0 = Date.now();
  const at = (ms: number) => sleep(Math.max(0, t0 + ms - Date.now()));

  async function send(run: RunPlan, via: 'socket' | 'http', client: number, slot: number): Promise<StartRequest> {
    const userId = plan.users[run.user].id;
    const threadId = run.thread === 'new' ? null : threads[run.user][run.thread];
    const req: StartRequest = {
      id: `q${++requestSeq}`,
      userId,
      via,
      node: '-',
      correlationId: run.correlationId,
      threadId,
      multitask: run.multitask,
      agent: run.agent,
      sentAt: Date.now(),
      answeredAt: null,
      outcome: { kind: 'lost', reason: IN_FLIGHT },
    };
    requests.push(req);
    const payload = { agent: run.agent, input: run.input, multitask: run.multitask, ...(threadId ? { thread_id: threadId } : {}), ...(run.correlationId ? { correlation_id: run.correlationId } : {}) };
    if (via === 'socket' || threadId === null) {
      const c = clients[run.user][client];
      await c.settled();
      return c.start(req, payload);
    }
    const node = reach(slot);
    req.node = node?.nodeId ?? '-';
    req.sentAt = Date.now();
    if (!node) {
      req.outcome = { kind: 'lost', reason: 'no node up' };
      return req;
    }
    const { thread_id: _t, ...body } = payload;
    const res = await http(node.url, 'POST', `/v1/threads/${threadId}/runs`, tokens[run.user], body, ackTimeoutMs);
    if (res.status === 0) req.outcome = { kind: 'lost', reason: res.error ?? 'no answer' };
    else {
      req.answeredAt = Date.now();
      if (res.status === 202) {
        req.outcome = { kind: 'accepted', runId: res.body.id, threadId: res.body.thread_id, deduplicated: res.headers?.get('idempotent-replayed') === 'true' };
        // The user's clients follow it from its first event; the one that would have sent it follows it anyway.
        clients[run.user][client].follow(res.body.id);
      } else req.outcome = { kind: 'refused', code: String(res.body?.error?.code ?? res.status), message: String(res.body?.error?.message ?? '') };
    }
    return req;
  }

  async function stop(run: RunPlan, runId: string): Promise<void> {
    const s = run.stop!;
    await sleep(s.afterMs);
    if (s.via === 'socket') {
      const c = clients[run.user][s.client];
      const ack = await c.stop(runId);
      stops.push({ runId, via: 'socket', node: c.node ?? '-', answer: ack === null ? 'no answer' : ack.error ? ack.error.code : String(ack.status) });
      return;
    }
    const node = reach(s.slot);
    if (!node) return;
    const res = await http(node.url, 'POST', `/v1/runs/${runId}/cancel`, tokens[run.user], undefined, ackTimeoutMs);
    stops.push({ runId, via: 'http', node: node.nodeId, answer: res.status === 0 ? (res.error ?? 'no answer') : String(res.status) });
  }

  async function issue(run: RunPlan): Promise<void> {
    await at(run.atMs);
    const work: Promise<unknown>[] = [];
    if (run.duplicate) {
      const d = run.duplicate;
      work.push(sleep(d.afterMs).then(() => send(run, d.via, d.client, d.slot)));
    }
    let req = await send(run, run.via, run.client, run.slot);
    // An unanswered request with a correlation id is retried through another node: the retry must find the same run.
    if (req.outcome.kind === 'lost' && run.correlationId !== null) {
      await sleep(200);
      req = await send(run, run.via === 'socket' ? 'http' : 'socket', (run.client + 1) % plan.users[run.user].clients.length, run.slot);
    }
    if (run.stop && req.outcome.kind === 'accepted') work.push(stop(run, req.outcome.runId));
    await Promise.all(work);
  }

  /**
   * Starts a killed node again, as a process manager would: a start that fails is tried again (up to three
   * times) and reported, since a node that cannot come back is worth knowing about even when nothing is lost.
   */
  async function restart(slot: number, nodeId: string | undefined): Promise<string | null> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        return (await cluster.start(slot, nodeId ? { nodeId } : {})).nodeId;
      } catch (err) {
        const why = (err as Error).message.split('\n').filter(Boolean).slice(0, 2).join(' ');
        startFailures.push(`slot ${slot}, attempt ${attempt}: ${why}`);
        deps.progress(`could not restart slot ${slot} (attempt ${attempt}): ${why}`);
      }
    }
    return null;
  }

  async function injectFaults(): Promise<void> {
    let restarts = 0;
    for (const f of plan.faults) {
      await at(f.atMs);
      const startedAt = Date.now();
      if (f.kind === 'kill') {
        const node = cluster.node(f.slot);
        if (node.state === 'exited') continue;
        await cluster.kill(f.slot);
        deps.progress(`fault: SIGKILL ${node.nodeId} (slot ${f.slot}); back in ${f.downMs} ms`);
        await sleep(f.downMs);
        const next = await restart(f.slot, f.newNodeId ? `${node.nodeId.replace(/-r\d+$/, '')}-r${++restarts}` : undefined);
        faults.push({ kind: 'kill', node: node.nodeId, startedAt, endedAt: Date.now(), detail: next ? `restarted as ${next}` : 'could not be restarted' });
      } else if (f.kind === 'pause') {
        const node = cluster.node(f.slot);
        if (node.state !== 'up') continue;
        cluster.pause(f.slot);
        deps.progress(`fault: SIGSTOP ${node.nodeId} for ${f.pausedMs} ms (NODE_LEASE_MS=${plan.options.leaseMs})`);
        await sleep(f.pausedMs);
        cluster.resume(f.slot);
        faults.push({ kind: 'pause', node: node.nodeId, startedAt, endedAt: Date.now(), detail: `SIGCONT after ${f.pausedMs} ms` });
      } else {
        if (!deps.redis) continue;
        deps.progress(`fault: Redis restart (down ${f.downMs} ms)`);
        await deps.redis.restart(f.downMs);
        faults.push({ kind: 'redis', node: null, startedAt, endedAt: Date.now(), detail: `down ${f.downMs} ms` });
      }
    }
  }

  async function moveClients(): Promise<void> {
    await Promise.all(
      plan.moves.map(async (m) => {
        await at(m.atMs);
        const c = clients[m.user][m.client];
        await c.settled();
        await c.moveTo(cluster.node(m.slot).state === 'up' && cluster.node(m.slot).nodeId !== c.node ? address(m.slot) : null);
      }),
    );
  }

  const progress = setInterval(() => {
    const count = (k: string) => requests.filter((r) => r.outcome.kind === k && !(r.outcome.kind === 'lost' && r.outcome.reason === IN_FLIGHT)).length;
    const inFlight = requests.filter((r) => r.outcome.kind === 'lost' && r.outcome.reason === IN_FLIGHT).length;
    const states = cluster.slots.map((s) => `${cluster.node(s).nodeId}:${cluster.node(s).state}`).join(' ');
    deps.progress(`${Math.round((Date.now() - t0) / 1000)} s: ${requests.length} requests, ${count('accepted')} acknowledged, ${count('refused')} refused, ${count('lost')} unanswered, ${inFlight} in flight; ${states}`);
  }, 5000);
  try {
    await Promise.all([Promise.all(plan.runs.map(issue)), injectFaults(), moveClients()]);
  } finally {
    clearInterval(progress);
  }
  return { requests, clients: clients.flat(), faults, stops, threads, startFailures };
}

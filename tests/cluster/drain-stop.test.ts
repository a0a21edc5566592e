/**
 * A stop_agent sent to a draining node while its runs move (shared-runs.ts move()) ends the run cancelled. move()
 * marks every moving run finished before it writes run_restarted and gives the run back; run-service.ts cancel()
 * found the run here, finished, and did nothing (no stop, no flag in the database for the give-back to honour): the
 * acknowledged stop was lost, and the run went back to the shared queue, ran again on another node and completed
 * (helper-82; 5 of 5 runs on the old code). The database a few milliseconds away widens the window the stops must hit.
 * Each stop is answered: a stopping node answers what its sockets sent before it closes them (atoll.ts; on a busy
 * machine every answer was cut off, the database round trips of the stops outlasting the rest of the drain).
 */
import net from 'node:net';
import { httpCall, UserClient } from '../helpers/client';
import { CLUSTER_SECRET } from '../helpers/cluster';
import { scratchDatabase } from '../helpers/pg-scratch';
import { FIXTURE_AGENTS } from '../helpers/server';
import { startCluster, type Cluster } from '../../scripts/cluster/nodes';
import { freshKeyPrefix, removeKeys, SHARED_REDIS_URL } from '../../scripts/cluster/redis';

jest.setTimeout(240_000);

const open: UserClient[] = [];

let proxy: net.Server | null = null;
const links = new Set<net.Socket>();

/**
 * A database a few milliseconds away (DB_DELAY_MS on each answer), as a database on another host under load is:
 * only the width of the window changes, not what happens in it.
 */
const DB_DELAY_MS = 3;
/** While set, the database's answers wait here, in order: the moving runs stay in the window the stops must hit. */
let held: (() => void)[] | null = null;
async function slowProxy(targetPort: number): Promise<number> {
  proxy = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    links.add(client).add(upstream);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) =>
      setTimeout(() => {
        const answer = () => !client.destroyed && client.write(d);
        if (held) held.push(answer);
        else answer();
      }, DB_DELAY_MS),
    );
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => proxy!.listen(0, '127.0.0.1', () => r()));
  return (proxy.address() as net.AddressInfo).port;
}

/** Two one-node clusters on one database and one Redis prefix: n1 (database a few ms away) and n2 (direct). */
let slowSide: Cluster;
let fastSide: Cluster | null = null;
const database = scratchDatabase();
const redis = { url: SHARED_REDIS_URL, keyPrefix: freshKeyPrefix() };
const ENV = { AUTH_DEV_LOGIN: '1', AGENTS_DIR: FIXTURE_AGENTS, USER_MAX_CONCURRENT_RUNS: '100', SHUTDOWN_GRACE_MS: '1500', THREADS_PER_CELL: '6', WARM_SPARE_THREADS: '0' };
// The lease outlives the moment the slow node's database is held (HOLD_MS): no takeover meanwhile.
const common = { redis, jwtSecret: CLUSTER_SECRET, leaseMs: 6000, startTimeoutMs: 120_000, env: ENV };
const HOLD_MS = 1500;

beforeAll(async () => {
  await database.create();
  const url = new URL(database.url);
  url.port = String(await slowProxy(Number(url.port || 5432)));
  slowSide = await startCluster({ ...common, size: 1, databaseUrl: url.toString(), nodeId: () => 'n1' });
}, 300_000);

afterAll(async () => {
  open.forEach((c) => c.close());
  await slowSide?.close();
  await fastSide?.close();
  for (const l of links) l.destroy();
  await new Promise((r) => (proxy ? proxy.close(r) : r(undefined)));
  await removeKeys(redis.url, redis.keyPrefix).catch(() => undefined);
  await database.drop();
});

async function holderOf(runId: string): Promise<string | null> {
  const c = await database.connect();
  try {
    const { rows } = await c.query('SELECT n."nodeId" FROM "Run" r LEFT JOIN "Node" n ON n."id" = r."owner" WHERE r."id" = $1', [runId]);
    return rows[0]?.nodeId ?? null;
  } finally {
    await c.end();
  }
}

test('a stop acknowledged by a draining node while its runs move ends the run cancelled, not run again elsewhere', async () => {
  const user = 'h82drain';
  const onN1 = await UserClient.connect(slowSide.url(1), user);
  open.push(onN1);
  const N = 5;
  const runs: { run_id: string; thread_id: string }[] = [];
  for (let i = 0; i < N; i++) runs.push(await onN1.start({ agent: 'gated', input: { text: `d${i}`, gate: 'h82-gate', parts: 2 } }));
  for (const r of runs) await onN1.waitForEvent(r.run_id, 'agent_started', 60_000);
  for (const r of runs) expect(await holderOf(r.run_id)).toBe('n1');

  fastSide = await startCluster({ ...common, size: 1, databaseUrl: database.url, nodeId: () => 'n2' });
  const onN2 = await UserClient.connect(fastSide.url(1), user);
  open.push(onN2);

  // The moment the draining node says a run moves (run_restarted, node_draining), the user stops every run there.
  // The node's database answers are held meanwhile, a moment (on a busy machine the client could otherwise see
  // the event only after the node has given its runs back and left): the stops reach it while its runs move.
  const acks: Promise<any>[] = [];
  let sent = false;
  const stopAll = () => {
    if (sent) return;
    sent = true;
    held = [];
    for (const r of runs) acks.push(onN1.ack('stop_agent', { run_id: r.run_id }).then((a) => ({ at: Date.now(), a }), (e) => ({ at: Date.now(), e: String(e) })));
    setTimeout(() => {
      const answers = held ?? [];
      held = null;
      answers.forEach((answer) => answer());
    }, HOLD_MS);
  };
  onN1.socket.on('run_restarted', stopAll);
  const exited = slowSide.term(1);
  const replies = await (async () => {
    for (const deadline = Date.now() + 60_000; !sent && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
    return Promise.all(acks);
  })();
  await exited;
  // Each stop that reached the node is answered before it closes its sockets (a stop goes through the database,
  // which takes a moment).
  expect(replies.map((r) => r.a?.status ?? r.e)).toEqual(runs.map(() => expect.stringMatching(/^(running|queued)$/)));

  // The gate opens: any run that is still alive completes.
  expect((await httpCall(fastSide!.url(1), 'POST', '/v1/threads', { title: 'h82-gate' }, onN2.token)).status).toBe(201);
  const finals: Record<string, string> = {};
  for (const r of runs) {
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((x) => setTimeout(x, 200))) {
      const view = await httpCall(fastSide!.url(1), 'GET', `/v1/runs/${r.run_id}`, undefined, onN2.token);
      if (!['queued', 'running'].includes(view.body.status)) {
        finals[r.run_id] = view.body.status;
        break;
      }
    }
  }
  // Each run whose stop was acknowledged ends cancelled.
  expect(Object.values(finals)).toEqual(runs.map(() => 'cancelled'));
});

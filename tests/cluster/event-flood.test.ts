/**
 * One user flooding events as fast as the caps allow (12 runs of 256 events of 64 KiB, 3 at a time:
 * USER_MAX_CONCURRENT_RUNS), with a reading socket on each of two nodes sharing a private redis-server (Redis's
 * default `client-output-buffer-limit pubsub 32mb 8mb 60`), while another user streams an event every 50 ms with a
 * socket on each node. Measured (printed): each node's subscriber output buffer in Redis, second by second, and the
 * other user's event latency and resync notices. Asserted: the flood never holds a node's subscriber buffer near
 * Redis's soft limit (8 MB), no node loses its lease, no run of either user is restarted or fails, and the other
 * user is never told to resync. Before the relay sliced writes by bytes (review-c), a run's 200-event slice was
 * 12.8 MiB: the subscriber buffer peaked at 8.8-20.6 MB (three runs), the other user's p99 was 3.5-5.4 s (65 ms
 * alone), and once both nodes lost their 2 s leases under the 38 MiB commits, re-running the other user's runs.
 */
import { io, type Socket } from 'socket.io-client';
import { Redis } from 'ioredis';
import { devLogin, httpCall, sleep } from '../helpers/client';
import { startTestCluster, type TestCluster } from '../helpers/cluster';
import { agentsDirWith, FIXTURE_AGENTS } from '../helpers/server';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';

jest.setTimeout(600_000);

const FLOOD_RUNS = Number(process.env.FLOOD_RUNS ?? 12);
const EVENT_CHARS = 65_500;
const EVENTS_PER_RUN = Math.floor(16_777_216 / (EVENT_CHARS + 16)); // 256 events of ~64 KiB: MAX_RUN_EVENT_BYTES

let cluster: TestCluster;
let agents: string;

beforeAll(async () => {
  agents = agentsDirWith({
    'flood.mjs': `export default class Flood {
  static agentName = 'flood';
  static description = 'emits as much as the caps allow';
  async execute(ctx) {
    const big = 'x'.repeat(${EVENT_CHARS});
    for (let i = 0; i < ${EVENTS_PER_RUN}; i++) ctx.emit('agent_thinking', { reasoning: big });
    return 'ok';
  }
}`,
  });
  for (const f of fs.readdirSync(FIXTURE_AGENTS)) fs.copyFileSync(path.join(FIXTURE_AGENTS, f), path.join(agents, f));
  cluster = await startTestCluster({ nodes: 2, privateRedis: true, env: { AGENTS_DIR: agents, USER_MAX_CONCURRENT_RUNS: '3' } });
}, 300_000);

afterAll(async () => {
  await cluster?.destroy();
});

interface Probe {
  socket: Socket;
  slot: number;
  latencies: { run: string; seq: number; ms: number; type: string }[];
  resyncs: unknown[];
  bytes: number;
  events: number;
}

async function probe(slot: number, userId: string, keep: boolean): Promise<Probe> {
  const token = await devLogin(cluster.url(slot), userId);
  const socket = io(cluster.url(slot), { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  const p: Probe = { socket, slot, latencies: [], resyncs: [], bytes: 0, events: 0 };
  socket.onAny((name: string, e: any) => {
    if (name === 'resync_required') p.resyncs.push({ at: Date.now(), ...e });
    if (e && typeof e === 'object' && 'seq' in e) {
      p.events++;
      if (keep) p.latencies.push({ run: e.run_id, seq: e.seq, type: e.type, ms: Date.now() - Date.parse(e.timestamp) });
    }
  });
  return p;
}

function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
}

test('one user flooding every cap keeps each subscriber buffer far below Redis\'s limits, no lease is lost and another user is never told to resync', async () => {
  const redis = new Redis(cluster.redis!.url);
  const peaks = new Map<string, { omem: number; qbuf: number; tot: number }>();
  const series: Record<string, number[]> = {};
  const t00 = Date.now();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const list = (await redis.client('LIST')) as string;
      for (const line of list.split('\n')) {
        const name = /name=(\S*)/.exec(line)?.[1];
        if (!name) continue;
        const omem = Number(/omem=(\d+)/.exec(line)?.[1] ?? 0);
        const qbuf = Number(/qbuf=(\d+)/.exec(line)?.[1] ?? 0);
        const tot = Number(/tot-mem=(\d+)/.exec(line)?.[1] ?? 0);
        const sec = Math.floor((Date.now() - t00) / 1000);
        (series[name] ??= [])[sec] = Math.max(series[name][sec] ?? 0, Math.round(omem / 1e5) / 10);
        const p = peaks.get(name) ?? { omem: 0, qbuf: 0, tot: 0 };
        peaks.set(name, { omem: Math.max(p.omem, omem), qbuf: Math.max(p.qbuf, qbuf), tot: Math.max(p.tot, tot) });
      }
      await sleep(50);
    }
  })();

  // The flooder holds a reading socket on each node (in a process of its own, so that its reading does not hold up
  // the victim's sockets in this one): every node subscribes to its channel.

  const ftok = await devLogin(cluster.url(1), 'flooder');
  const reader = spawn(process.execPath, ['-e', `
    const { io } = require(${JSON.stringify(require.resolve('socket.io-client'))});
    const counts = [0, 0];
    ${JSON.stringify([cluster.url(1), cluster.url(2)])}.forEach((url, i) => {
      const s = io(url, { auth: { token: ${JSON.stringify(ftok)} }, transports: ['websocket'], reconnection: false, forceNew: true });
      s.onAny(() => counts[i]++);
      s.on('connect', () => console.log('connected ' + i));
    });
    process.on('SIGTERM', () => { console.log('counts ' + JSON.stringify(counts)); process.exit(0); });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  let readerOut = '';
  reader.stdout!.on('data', (d) => (readerOut += d));
  await new Promise<void>((r) => { const t = setInterval(() => { if ((readerOut.match(/connected/g) ?? []).length === 2) { clearInterval(t); r(); } }, 50); });
  const flooders = { get counts() { return readerOut; } };
  const victims = [await probe(1, 'victim', true), await probe(2, 'victim', true)];
  const ftoken = cluster.token('flooder');
  const vtoken = cluster.token('victim');

  // Victim: a steady stream, one event every 50 ms, runs on whichever node claims it.
  const victimRuns: string[] = [];
  let victimGoing = true;
  const victimLoop = (async () => {
    while (victimGoing) {
      const th = await httpCall(cluster.url(1), 'POST', '/v1/threads', {}, vtoken);
      const r = await httpCall(cluster.url(1), 'POST', `/v1/threads/${th.body.id}/runs`, { agent: 'streamer', input: { text: 'v', parts: 40, delay: 50 } }, vtoken);
      victimRuns.push(r.body.id);
      for (;;) {
        const s = await httpCall(cluster.url(1), 'GET', `/v1/runs/${r.body.id}`, undefined, vtoken);
        if (['completed', 'failed', 'cancelled'].includes(s.body.status)) break;
        await sleep(200);
      }
    }
  })();
  await sleep(3000);


  const t0 = Date.now();
  const floodRuns: string[] = [];
  for (let i = 0; i < FLOOD_RUNS; i++) {
    const th = await httpCall(cluster.url(1), 'POST', '/v1/threads', {}, ftoken);
    const r = await httpCall(cluster.url(1), 'POST', `/v1/threads/${th.body.id}/runs`, { agent: 'flood', input: {} }, ftoken);
    expect(r.status).toBe(202);
    floodRuns.push(r.body.id);
  }
  const statuses: string[] = [];
  for (const id of floodRuns) {
    for (;;) {
      const s = await httpCall(cluster.url(1), 'GET', `/v1/runs/${id}`, undefined, ftoken);
      if (['completed', 'failed', 'cancelled'].includes(s.body.status)) {
        statuses.push(s.body.status + (s.body.error ? `:${s.body.error.code}` : ''));
        break;
      }
      await sleep(250);
    }
  }
  const floodMs = Date.now() - t0;
  await sleep(3000);
  victimGoing = false;
  await victimLoop;
  sampling = false;
  await sampler;
  reader.kill('SIGTERM');
  await new Promise((r) => reader.once('exit', r));
  const lostLogs = cluster.slots.map((slot) => cluster.node(slot).logs.filter((l) => Number(l.level) >= 40 || /Redis connection lost|resubscrib|reconnected|PUBLISH failed/.test(String(l.msg))).map((l) => JSON.stringify(l).slice(0, 400)));
  const report = {
    floodRuns: FLOOD_RUNS,
    floodMB: (FLOOD_RUNS * EVENTS_PER_RUN * EVENT_CHARS) / 1e6,
    floodMs,
    statuses: [...new Set(statuses)],
    flooderEvents: flooders.counts,
    series: Object.fromEntries(Object.entries(series).filter(([k]) => k.includes('subscriber')).map(([k, v]) => [k, Array.from(v, (x) => x ?? 0).join(' ')])),
    victimResyncs: victims.map((v) => v.resyncs),
    peaks: Object.fromEntries(peaks),
    nodeLogs: lostLogs,
    victims: victims.map((v) => {
      const during = v.latencies;
      return {
        slot: v.slot,
        events: v.events,
        resyncs: v.resyncs.length,
        p50: pct(during.map((l) => l.ms), 0.5),
        p99: pct(during.map((l) => l.ms), 0.99),
        max: Math.max(...during.map((l) => l.ms)),
        n: during.length,
      };
    }),

  };
  console.log(JSON.stringify(report, null, 1));
  redis.disconnect();
  victims.forEach((p) => p.socket.close());
  expect(statuses).toEqual(floodRuns.map(() => 'completed'));
  expect(lostLogs.flat().filter((l) => /lease lost|Redis connection lost|run abandoned|took over/.test(l))).toEqual([]);
  for (const [name, peak] of peaks) if (name.endsWith(':subscriber')) expect([name, peak.omem < 8_000_000]).toEqual([name, true]);
  expect(victims.map((v) => v.resyncs)).toEqual([[], []]);
});

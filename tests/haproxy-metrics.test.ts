/**
 * The public side of deploy/haproxy/haproxy.cfg serves no metrics page under any spelling of /metrics: express routes
 * paths case-insensitively and without strict trailing slashes, so the exact `{ path /metrics }` deny let /METRICS
 * and /metrics/ through to the whole page (helper-64). Runs the real haproxy (Debian's package) with the shipped
 * file, its backends pointed at one live node. And it refuses one address's flood of any path, not only /v1 (the
 * node budgets /v1 itself, and a 429 costs it about what /healthz does).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, startServer, type TestServer } from './helpers/server';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });

let server: TestServer;
let haproxy: ChildProcess | undefined;
let dir: string;
let publicUrl: string;
beforeAll(async () => {
  server = await startServer({ CELLS: '1', THREADS_PER_CELL: '1' });
  const [front, stats] = [await freePort(), await freePort()];
  const cfg = fs
    .readFileSync(path.join(ROOT, 'deploy/haproxy/haproxy.cfg'), 'utf8')
    .replace(/^resolvers docker\n(?:[ \t].*\n)*/m, '')
    .replace(' resolvers docker init-addr last,libc,none', '')
    .replace(/^(\s*)server atoll-1 .*$/m, `$1server atoll-1 127.0.0.1:${server.port} cookie atoll-1`)
    .replace(/^\s*server atoll-[23] .*\n/gm, '')
    .replace('bind :8080', `bind 127.0.0.1:${front}`)
    .replace('bind :8404', `bind 127.0.0.1:${stats}`)
    .replace('log stdout format raw local0 info', '')
    .replace('maxconn 50000', 'maxconn 1000');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-haproxy-metrics-'));
  fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
  haproxy = spawn('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  haproxy.stderr!.on('data', (c) => (errors += c));
  publicUrl = `http://127.0.0.1:${front}`;
  let last = '';
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${publicUrl}/healthz`).then((r) => ((last = String(r.status)), r.status === 200), (e) => ((last = String(e?.cause ?? e)), false));
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`haproxy did not come up: ${last} ${errors}`);
}, 90_000);
afterAll(async () => {
  haproxy?.kill();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the public frontend serves no metrics page under any spelling of /metrics', async () => {
  const seen: Record<string, number> = {};
  for (const p of ['/metrics', '/metrics?x=1', '/metrics/', '/METRICS', '/Metrics']) {
    const res = await fetch(`${publicUrl}${p}`);
    const body = await res.text();
    seen[p] = /^atoll_cells_alive/m.test(body) ? res.status : -res.status;
  }
  // Positive: the metrics page was served; negative: refused with that status.
  expect(seen).toEqual({ '/metrics': -404, '/metrics?x=1': -404, '/metrics/': -404, '/METRICS': -404, '/Metrics': -404 });
}, 60_000);

test('one address past 500 requests in 10 s is refused by HAProxy on every path, /healthz included', async () => {
  // The node never refuses /healthz, so a 429 there is HAProxy's. Sent 25 at a time: the window is 10 s.
  const statuses: number[] = [];
  while (statuses.length < 700) {
    const batch = await Promise.all(Array.from({ length: 25 }, () => fetch(`${publicUrl}/healthz`).then(async (r) => (await r.text(), r.status))));
    statuses.push(...batch);
  }
  const refused = statuses.filter((s) => s === 429).length;
  expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
  // At most 500 pass in the window (a few more if the first ones have left it on a slow machine).
  expect(refused).toBeGreaterThanOrEqual(100);
  expect((await fetch(`${publicUrl}/`)).status).toBe(429);
  // The node itself still answers: the refusals were HAProxy's.
  expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
}, 120_000);

/**
 * What a socket's CONNECT carries besides its token (helper-86): socket.io parsed it whole and kept it as the socket's
 * `handshake.auth` for the socket's life. 90,000 keys beside a valid token held ~6 MiB of the front's heap per socket;
 * 100 sockets of one address took the front from 205 to 816 MB RSS (the transport's cap, lowered since, now cuts a
 * megabyte off). Now a CONNECT of more than MAX_CONNECT_CHARS closes its connection unread, and a socket keeps
 * nothing of what it signed in with.
 */
import WebSocket from 'ws';
import { startServer, type TestServer } from './helpers/server';
import { devLogin } from './helpers/client';
import { messageCap } from '../protocol/requests';

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ NODE_OPTIONS: '--expose-gc', CELLS: '1', THREADS_PER_CELL: '1' }); // /metrics?gc=1 collects first
});
afterAll(async () => {
  await server?.stop();
});

async function heapUsed(): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics?gc=1`)).text();
  const line = text.split('\n').find((l) => l.startsWith('nodejs_heap_size_used_bytes{') && !l.includes('cell='));
  return Number(line!.split(' ').at(-1));
}

/** A bare engine.io WebSocket that sends `connect` as its CONNECT: joined (true) or closed or refused (false). */
function rawConnect(connect: string): Promise<{ ws: WebSocket; ok: boolean }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
    ws.on('message', (m) => {
      const s = m.toString();
      if (s.startsWith('0')) ws.send(connect);
      else if (s.startsWith('40')) resolve({ ws, ok: true });
      else if (s.startsWith('44')) resolve({ ws, ok: false });
      else if (s === '2') ws.send('3');
    });
    ws.on('error', () => resolve({ ws, ok: false }));
    ws.on('close', () => resolve({ ws, ok: false }));
  });
}

const junk = (keys: number) => Object.fromEntries(Array.from({ length: keys }, (_, i) => [`k${i}`, 0]));

// 6,000 keys: ~60 KB, under the transport's cap (208 KiB), so only MAX_CONNECT_CHARS stands in its way.
test('a CONNECT of 60 KB beside a valid token is closed unread: the front keeps none of it', async () => {
  const token = await devLogin(server.url, 'mallory');
  const connect = `40${JSON.stringify({ token, junk: junk(6_000) })}`;
  expect(connect.length).toBeGreaterThan(50_000);
  expect(connect.length).toBeLessThan(messageCap(65_536));
  const before = await heapUsed();
  const sockets = [];
  for (let i = 0; i < 10; i++) sockets.push(await rawConnect(connect));
  const held = (await heapUsed()) - before;
  sockets.forEach((s) => s.ws.terminate());
  process.stdout.write(`10 CONNECTs of 6,000 keys: ${sockets.filter((s) => s.ok).length} joined, heap held ${(held / 1048576).toFixed(1)} MiB\n`);
  expect(sockets.filter((s) => s.ok)).toEqual([]);
  expect(held / 1048576).toBeLessThan(20);
}, 120_000);

test("a socket keeps nothing of its CONNECT's extra fields (under the cap) once it joined", async () => {
  const connects = await Promise.all(['m1', 'm2', 'm3'].map(async (u) => `40${JSON.stringify({ token: await devLogin(server.url, u), junk: junk(1_500) })}`));
  expect(Math.max(...connects.map((c) => c.length))).toBeLessThan(16 * 1024);
  const before = await heapUsed();
  const sockets = [];
  // Per user at most MAX_CONNECTIONS_PER_USER (20).
  for (const connect of connects) for (let i = 0; i < 20; i++) sockets.push(await rawConnect(connect));
  const held = (await heapUsed()) - before;
  sockets.forEach((s) => s.ws.terminate());
  process.stdout.write(`60 sockets with 1,500 extra keys each: heap held ${(held / 1048576).toFixed(2)} MiB\n`);
  expect(sockets.filter((s) => !s.ok)).toEqual([]);
  expect(held / 1048576).toBeLessThan(3);
}, 120_000);

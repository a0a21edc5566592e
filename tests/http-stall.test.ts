/**
 * The HTTP server does not wait forever for a client: answers a client stops reading are cut after
 * HTTP_STALL_TIMEOUT_MS without progress (their memory freed), so are requests whose body stops arriving, and a
 * connection that never finishes its headers is closed after HEADERS_TIMEOUT_MS (server/http/server-limits.ts).
 * Real TCP clients on a real server.
 */
import net from 'node:net';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually } from './helpers/client';

const STALL_MS = 2000;
let server: TestServer;
let u: UserClient;
let threadId: string;

beforeAll(async () => {
  server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, HTTP_STALL_TIMEOUT_MS: String(STALL_MS) });
  u = await UserClient.connect(server.url, 'stall-user');
  // 8 echo runs of ~60 KB: a page of messages of ~1 MiB.
  const text = 'a'.repeat(60_000);
  const first = await u.start({ agent: 'echo', input: text });
  threadId = first.thread_id;
  await u.waitForRun(first.run_id);
  for (let i = 1; i < 8; i++) await u.waitForRun((await u.start({ agent: 'echo', input: text, thread_id: threadId })).run_id);
}, 120_000);
afterAll(async () => {
  u.close();
  await server.stop();
});

/** A raw connection that reads nothing until resumed; records when it closed and what it got. */
function rawConnection(): { socket: net.Socket; closed: () => boolean; received: () => number; connected: Promise<void> } {
  const socket = net.connect(server.port, '127.0.0.1');
  socket.pause();
  let closed = false;
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  socket.on('error', () => {});
  socket.on('close', () => (closed = true));
  return { socket, closed: () => closed, received: () => received, connected: new Promise((r) => socket.once('connect', () => r())) };
}

const stallLines = () => server.logs.filter((l) => l.msg === 'HTTP client stalled; connection closed');

test('a client that asks for many answers and reads none has its connection cut, its unsent answers dropped', async () => {
  const page = `/v1/threads/${threadId}/messages?limit=100`;
  const one = await u.http('GET', page);
  expect(one.status).toBe(200);
  const answerBytes = Buffer.byteLength(JSON.stringify(one.body));
  expect(answerBytes).toBeGreaterThan(400_000);
  // 40 pipelined requests (~40 MiB of answers), far more than the kernel's socket buffers hold.
  const c = rawConnection();
  await c.connected;
  const request = `GET ${page} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${u.token}\r\n\r\n`;
  c.socket.write(request.repeat(40));
  const before = stallLines().length;
  expect(await eventually(() => stallLines().length > before, 60_000, 100)).toBe(true);
  expect(stallLines().at(-1)).toMatchObject({ level: 30, path: `/v1/threads/${threadId}/messages`, stall_ms: STALL_MS });
  // What the front held for it (the answer being written), dropped with the connection.
  expect(stallLines().at(-1)!.unsent_bytes).toBeGreaterThan(0);
  // Reading now gets what the kernel had buffered, then the end: far less than the 40 answers.
  c.socket.resume();
  expect(await eventually(() => c.closed(), 30_000, 50)).toBe(true);
  expect(c.received()).toBeLessThan(answerBytes * 40);
  // A client that reads gets its answers as before.
  expect((await u.http('GET', page)).status).toBe(200);
}, 120_000);

test('a request body that stops arriving is cut after HTTP_STALL_TIMEOUT_MS', async () => {
  const c = rawConnection();
  await c.connected;
  c.socket.write(`POST /v1/threads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${u.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"title":`);
  c.socket.resume();
  const before = stallLines().length;
  expect(await eventually(() => c.closed(), 60_000, 50)).toBe(true);
  // The line is written before the socket is destroyed, but it reaches us through the server's stdout pipe, which
  // may be read after the connection's close (CI saw the close first).
  expect(await eventually(() => stallLines().length > before, 10_000, 20)).toBe(true);
  expect(stallLines().at(-1)).toMatchObject({ method: 'POST', path: '/v1/threads' });
}, 90_000);

test('a connection that never finishes its headers is closed (HEADERS_TIMEOUT_MS, 20 s)', async () => {
  const c = rawConnection();
  await c.connected;
  c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  c.socket.resume();
  // 20 s, checked every 5 s; Node's defaults (60 s, checked every 30 s) would keep it past this bound.
  expect(await eventually(() => c.closed(), 50_000, 100)).toBe(true);
}, 90_000);

/**
 * Bounded memory per client on every path: acks and replays are size-capped pages with a cursor, a socket
 * over its byte budget gets no more large answers, and a socket that takes nothing is cut off.
 */
import { io, type Socket } from 'socket.io-client';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, devLogin, eventually, httpCall, metricValue, type Envelope } from './helpers/client';

const BUDGET = 1024 * 1024; // SOCKET_MAX_BUFFERED_BYTES below; one answer may send a quarter of it
const ACK_CAP = BUDGET / 4;

describe('outbound budget', () => {
  let server: TestServer;
  let u: UserClient;
  let threadId: string;
  beforeAll(async () => {
    server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, SOCKET_MAX_BUFFERED_BYTES: String(BUDGET), SOCKET_STALL_TIMEOUT_MS: '2000' });
    u = await UserClient.connect(server.url, 'pager');
    // 8 runs of ~60 KB in, ~60 KB out: 16 messages, ~1 MB of history.
    for (let i = 0; i < 8; i++) {
      const run = await u.start({ agent: 'echo', input: `${i}:` + 'h'.repeat(60_000), ...(threadId ? { thread_id: threadId } : {}) });
      threadId = run.thread_id;
      await u.waitForRun(run.run_id);
    }
  }, 120_000);
  afterAll(async () => {
    u.close();
    await server.stop();
  });

  test('get_thread_history answers a size-capped page with a cursor; following it reads every message once, in order', async () => {
    const first = await u.ack('get_thread_history', { thread_id: threadId, limit: 100 });
    expect(first.messages.length).toBeGreaterThan(0);
    expect(first.messages.length).toBeLessThan(16);
    expect(Buffer.byteLength(JSON.stringify(first))).toBeLessThanOrEqual(ACK_CAP + 70_000);
    expect(first.next_after).toBe(first.messages.at(-1).id);
    const all = [...first.messages];
    for (let after = first.next_after; after !== null; ) {
      const page = await u.ack('get_thread_history', { thread_id: threadId, limit: 100, after });
      all.push(...page.messages);
      after = page.next_after;
    }
    expect(all).toHaveLength(16);
    expect(all.map((m: any) => m.id)).toEqual([...all.map((m: any) => m.id)].sort((a, b) => a - b));
    expect(new Set(all.map((m: any) => m.id)).size).toBe(16);
  });

  test('subscribe_run replays a long log in size-capped parts; following next_after_seq gives every seq once', async () => {
    const run = await u.start({ agent: 'streamer', input: { text: 'r', parts: 30, delay: 25, pad: 20_000 } });
    const live = await u.waitForRun(run.run_id, 60_000);
    const lastSeq = Math.max(...live.map((e) => e.seq));
    const token = await devLogin(server.url, 'pager');
    const s = io(server.url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    const got: Envelope[] = [];
    s.onAny((_n, e: Envelope) => e && typeof e === 'object' && 'seq' in e && got.push(e));
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    let acks = 0;
    for (let after: number | null = 0; after !== null; acks++) {
      const ack: any = await s.timeout(10_000).emitWithAck('subscribe_run', { run_id: run.run_id, after_seq: after });
      expect(ack.run_id).toBe(run.run_id);
      after = ack.next_after_seq;
    }
    s.close();
    expect(acks).toBeGreaterThanOrEqual(3);
    expect(got.map((e) => e.seq)).toEqual(Array.from({ length: lastSeq }, (_, i) => i + 1));
  }, 90_000);

  test('a stalled socket asking for history again and again: refused past its budget, then disconnected, with a log line and a metric', async () => {
    const token = await devLogin(server.url, 'pager');
    const s: Socket = io(server.url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    // Stop reading from the TCP connection, then keep asking for history (~1 MB a round) without waiting for
    // answers: once the kernel's buffers are full, what the server sends stays in its memory.
    (s.io.engine as any).transport.ws._socket.pause();
    const metric = async () => metricValue((await httpCall(server.url, 'GET', '/metrics')).body, 'atoll_socket_stalled_disconnects_total');
    const cutOff = await eventually(async () => {
      for (let i = 0; i < 4; i++) s.emit('get_thread_history', { thread_id: threadId, limit: 100 }, () => undefined);
      return (await metric()) >= 1;
    }, 40_000, 100);
    expect(cutOff).toBe(true);
    const line = server.logs.find((l) => l.msg === 'socket stalled; disconnected');
    expect(line).toMatchObject({ user_id: 'pager', stalled_ms: expect.any(Number) });
    // What it held when it was cut off: its budget plus at most one capped answer (and small refusals).
    expect(line!.buffered_bytes as number).toBeLessThanOrEqual(BUDGET + ACK_CAP + 70_000);
    s.close();
    // The server is fine and the user's other socket too.
    expect((await u.ack('get_thread_history', { thread_id: threadId, limit: 1 })).messages).toHaveLength(1);
  }, 90_000);
});

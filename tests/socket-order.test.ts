/**
 * The socket server on fakes (no database, no cells): a socket's client events are admitted in arrival order
 * even when the rate limiter answers them out of order (a remote limiter), while a slow handler holds up
 * none of the socket's later messages; and the user's bus subscription lives from the handshake of its
 * first socket to the going of its last.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { io as connect, type Socket } from 'socket.io-client';
import type { BusListener, EventBus } from '../server/bus/event-bus';
import type { Logger } from '../server/logger';
import { createSocketServer } from '../server/realtime/socket-server';
import type { RunService } from '../server/runs/run-service';
import type { RateLimiter, SharedState } from '../server/shared/shared-state';
import type { RunStore } from '../server/store/store';
import type { TokenService } from '../server/auth/tokens';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function rig() {
  const calls: string[] = [];
  /** The user limiter takes `delays.shift()` ms per take: later messages may be answered first. */
  const delays: number[] = [];
  const limiter = (delayed: boolean): RateLimiter => ({
    take: async () => {
      if (delayed) await sleep(delays.shift() ?? 0);
    },
    check: async () => undefined,
  });
  let stallStart = Promise.resolve();
  const runs = {
    start: async (_userId: string, req: { agent: string }) => {
      calls.push(`start ${req.agent}`);
      await stallStart;
      calls.push(`started ${req.agent}`);
      return { id: `run-${req.agent}`, threadId: 't', deduplicated: false };
    },
    cancel: async (_userId: string, runId: string) => {
      calls.push(`cancel ${runId}`);
      return { id: runId, status: 'cancelled' };
    },
  } as unknown as RunService;
  const subscribed: string[] = [];
  const bus: EventBus = {
    publish: () => undefined,
    async subscribe(userId: string, _listener: BusListener) {
      await sleep(20); // a remote bus: the handshake must wait for it
      subscribed.push(`sub ${userId}`);
      return () => subscribed.push(`unsub ${userId}`);
    },
    start: async () => undefined,
    stop: async () => undefined,
  };
  const http = createServer();
  const tokens = { session: (token: unknown) => ({ userId: String(token), expiresAt: null }) } as unknown as TokenService;
  const shared = {
    tickets: {},
    limits: { user: limiter(true), ip: limiter(false), authFailures: limiter(false) },
    connections: { claim: async () => async () => undefined },
  } as unknown as Pick<SharedState, 'tickets' | 'limits' | 'connections'>;
  const log = { error: () => undefined, warn: () => undefined, info: () => undefined } as unknown as Logger;
  const sockets = createSocketServer({
    http,
    tokens,
    bus,
    shared,
    runs,
    store: {} as RunStore,
    log,
    settings: { maxInputBytes: 64 * 1024, socketMaxBufferedPackets: 1000, socketMaxBufferedBytes: 1 << 24, socketStallTimeoutMs: 60_000, tokenExpiryWarningMs: 60_000, corsOrigins: [], trustProxy: false, ipv6BudgetPrefix: 56, maxConnectionsPerIp: 100 },
    onEventsDropped: () => undefined,
    onStalledDisconnect: () => undefined,
  });
  sockets.start();
  return { http, sockets, calls, delays, subscribed, stall: (p: Promise<void>) => (stallStart = p) };
}

let r: ReturnType<typeof rig>;
let url: string;
const clients: Socket[] = [];

async function client(user: string): Promise<Socket> {
  const socket = connect(url, { auth: { token: user }, transports: ['websocket'], reconnection: false, forceNew: true });
  clients.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return socket;
}

beforeEach(async () => {
  r = rig();
  await new Promise<void>((resolve) => r.http.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(r.http.address() as AddressInfo).port}`;
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  r.sockets.stop();
  await new Promise<void>((resolve) => r.sockets.io.close(() => resolve()));
});

test('start_agent then stop_agent start in that order though the limiter answers the second first', async () => {
  const socket = await client('u');
  r.delays.push(100, 0);
  const started = socket.emitWithAck('start_agent', { agent: 'a', input: 'x' });
  const stopped = socket.emitWithAck('stop_agent', { run_id: 'run-a' });
  await Promise.all([started, stopped]);
  expect(r.calls).toEqual(['start a', 'started a', 'cancel run-a']);
});

test('a slow handler holds up none of the socket\'s later messages', async () => {
  const socket = await client('u');
  let release!: () => void;
  r.stall(new Promise<void>((resolve) => (release = resolve)));
  const started = socket.emitWithAck('start_agent', { agent: 'a', input: 'x' });
  await expect(socket.emitWithAck('stop_agent', { run_id: 'run-a' })).resolves.toEqual({ run_id: 'run-a', status: 'cancelled' });
  expect(r.calls).toEqual(['start a', 'cancel run-a']);
  release();
  await started;
  expect(r.calls).toEqual(['start a', 'cancel run-a', 'started a']);
});

test('the user is subscribed before its first socket connects, once for all its sockets, until the last goes', async () => {
  const a = await client('u');
  expect(r.subscribed).toEqual(['sub u']);
  const b = await client('u');
  await client('v');
  expect(r.subscribed).toEqual(['sub u', 'sub v']);
  a.close();
  await sleep(100);
  expect(r.subscribed).toEqual(['sub u', 'sub v']);
  b.close();
  for (let i = 0; i < 50 && r.subscribed.length < 3; i++) await sleep(20);
  expect(r.subscribed).toEqual(['sub u', 'sub v', 'unsub u']);
});

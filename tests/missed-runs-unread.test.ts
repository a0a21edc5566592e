/**
 * After a bus gap, each socket is sent the runs its user started meanwhile that it never heard of (socket-server.ts,
 * announceMissedRuns): the log of each within the socket's budget, or resync_required from 0. A run whose log could
 * not be read then (the database did not answer) must still be announced: it was marked known to the socket (a
 * cursor at 0) and never named to it, so a finished run stayed unknown to the client, also after later gaps.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { io as connect } from 'socket.io-client';
import type { RunEventEnvelope } from '../protocol/events';
import type { BusListener, EventBus } from '../server/bus/event-bus';
import type { Logger } from '../server/logger';
import { createSocketServer } from '../server/realtime/socket-server';
import type { RunService } from '../server/runs/run-service';
import type { SharedState } from '../server/shared/shared-state';
import type { RunRecord, RunStore } from '../server/store/store';
import type { TokenService } from '../server/auth/tokens';
import { eventually } from './helpers/client';

function ev(seq: number, runId: string, type = 'partial_result'): RunEventEnvelope {
  const payload = type === 'partial_result' ? { text: `p${seq}` } : {};
  return { type, event_id: `${runId}-${seq}`, seq, run_id: runId, thread_id: 't', user_id: 'u', agent_name: 'a', timestamp: new Date().toISOString(), payload } as RunEventEnvelope;
}

function rig() {
  const listeners: BusListener[] = [];
  const bus: EventBus = {
    publish: () => undefined,
    subscribe: async (_userId, listener) => {
      listeners.push(listener);
      return () => listeners.splice(listeners.indexOf(listener), 1);
    },
    start: async () => undefined,
    stop: async () => undefined,
  };
  /** The runs in the "database", with their logs. */
  const runs = new Map<string, { queuedAt: Date; log: RunEventEnvelope[] }>();
  const lookups: string[] = [];
  /** Runs whose log cannot be read right now. */
  const failing = new Set<string>();
  const store = {
    findRun: async (userId: string, runId: string) => {
      lookups.push(runId);
      const run = runs.get(runId);
      return run && userId === 'u' ? ({ id: runId, userId, queuedAt: run.queuedAt } as RunRecord) : null;
    },
    listEvents: async (run: RunRecord, after: number) => {
      if (failing.has(run.id)) throw new Error('the database did not answer');
      return runs.get(run.id)!.log.filter((e) => e.seq > after);
    },
    listRunsSince: async () => [...runs].map(([id, run]) => ({ id, userId: 'u', queuedAt: run.queuedAt }) as RunRecord),
  } as unknown as RunStore;
  const http = createServer();
  const sockets = createSocketServer({
    http,
    tokens: { session: (token: unknown) => ({ userId: String(token), expiresAt: null }) } as unknown as TokenService,
    bus,
    shared: {
      tickets: {},
      limits: { user: { take: async () => undefined, check: async () => undefined }, ip: { take: async () => undefined, check: async () => undefined }, authFailures: { take: async () => undefined, check: async () => undefined } },
      connections: { claim: async () => async () => undefined },
    } as unknown as Pick<SharedState, 'tickets' | 'limits' | 'connections'>,
    runs: {} as RunService,
    store,
    log: { error: () => undefined, warn: () => undefined, info: () => undefined } as unknown as Logger,
    settings: { maxInputBytes: 64 * 1024, socketMaxBufferedPackets: 1000, socketMaxBufferedBytes: 1 << 24, socketStallTimeoutMs: 60_000, tokenExpiryWarningMs: 60_000, corsOrigins: [], trustProxy: false, ipv6BudgetPrefix: 56, maxConnectionsPerIp: 100 },
    onEventsDropped: () => undefined,
    onStalledDisconnect: () => undefined,
  });
  sockets.start();
  /** A node other than this one publishes `e` (it committed it first). */
  const publish = (e: RunEventEnvelope) => {
    for (const l of listeners) l.onEvent(e);
  };
  const gap = () => {
    for (const l of listeners) l.onGap();
  };
  return { http, sockets, runs, lookups, publish, gap, failing };
}


test('a missed run whose log cannot be read after a bus gap is announced with resync_required', async () => {
  const r = rig();
  await new Promise<void>((resolve) => r.http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(r.http.address() as AddressInfo).port}`;
  const client = connect(url, { auth: { token: 'u' }, transports: ['websocket'], reconnection: false, forceNew: true });
  const got: string[] = [];
  client.onAny((name: string, body: { run_id?: string; seq?: number; last_seq?: number }) => got.push(`${name} ${body.run_id}:${body.seq ?? body.last_seq}`));
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('connect_error', reject);
    });
    // Two runs accepted and finished on another node during the gap; the log of one cannot be read.
    r.runs.set('ok', { queuedAt: new Date(Date.now() + 1000), log: [ev(1, 'ok', 'message_received'), ev(2, 'ok', 'agent_completed')] });
    r.runs.set('unread', { queuedAt: new Date(Date.now() + 1000), log: [ev(1, 'unread', 'message_received'), ev(2, 'unread', 'agent_completed')] });
    r.failing.add('unread');
    r.gap();
    expect(await eventually(() => got.length >= 2, 5_000, 20)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(got.filter((g) => g.includes(' ok:'))).toEqual(['message_received ok:1', 'agent_completed ok:2']);
    expect(got.filter((g) => g.includes(' unread:'))).toEqual(['resync_required unread:0']);
  } finally {
    client.close();
    r.sockets.stop();
    await new Promise<void>((resolve) => r.sockets.io.close(() => resolve()));
  }
});

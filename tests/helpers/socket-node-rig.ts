/**
 * One node's socket server (server/realtime/socket-server.ts) on a fake bus and store, for real socket.io clients:
 * what other nodes publish, a bus gap, and the runs in the "database" with their logs are the test's to set.
 */
import { createServer } from 'node:http';
import type { RunEventEnvelope } from '../../protocol/events';
import type { BusListener, EventBus } from '../../server/bus/event-bus';
import type { Logger } from '../../server/logger';
import { createSocketServer } from '../../server/realtime/socket-server';
import type { RunService } from '../../server/runs/run-service';
import type { SharedState } from '../../server/shared/shared-state';
import type { RunRecord, RunStore } from '../../server/store/store';
import type { TokenService } from '../../server/auth/tokens';

/** An envelope of run `runId` of user `u`. */
export function ev(seq: number, runId: string, type = 'partial_result'): RunEventEnvelope {
  const payload = type === 'partial_result' ? { text: `p${seq}` } : {};
  return { type, event_id: `${runId}-${seq}`, seq, run_id: runId, thread_id: 't', user_id: 'u', agent_name: 'a', timestamp: new Date().toISOString(), payload } as RunEventEnvelope;
}

/** The server is not listening yet: `http.listen(0)` it. */
export function socketNodeRig() {
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

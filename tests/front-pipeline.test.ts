/**
 * The front's run pipeline below the sockets, on a real SQLite file: the group-committed writes (read back
 * through Prisma exactly as Prisma's own rows), a failing write that must not take its batch down, and
 * the order of a run's events when its cell answers before the acknowledging turn has ended.
 *
 * Prisma's query compiler is loaded with a dynamic import that Jest's module sandbox refuses, so Prisma
 * reads run in a plain Node child process (readThroughPrisma).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { createPrismaClient, type Db } from '../prisma/create-client';
import type { CellHandle } from '../server/cells/cell-handle';
import type { CellSupervisor } from '../server/cells/supervisor';
import { createLogger } from '../server/logger';
import { createMetrics } from '../server/metrics';
import type { FrontToCell } from '../server/protocol/cell-messages';
import type { RunEventEnvelope } from '../server/protocol/events';
import { createEventRelay } from '../server/runs/event-relay';
import { createRunService, type RunService } from '../server/runs/run-service';
import { createGroupCommit } from '../server/store/group-commit';
import { applyMigrations } from '../server/store/migrations';
import { createRunStore, type RunStore } from '../server/store/run-store';
import { createRunWrites, type RunWrites } from '../server/store/run-writes';
import { ROOT } from './helpers/server';

let dir: string;
let file: string;
let prisma: Db;
let writes: RunWrites;
let store: RunStore;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-pipeline-'));
  file = path.join(dir, 'atoll.db');
  applyMigrations(file, path.join(ROOT, 'prisma/migrations'));
  prisma = createPrismaClient(file);
  writes = createRunWrites(file, { busyTimeoutMs: 5000 });
  store = createRunStore(prisma, writes);
});
afterAll(async () => {
  writes.close();
  await prisma.$disconnect();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs `body` (an async function of `store`, the front's RunStore on Prisma) in a child process; returns its JSON. */
function readThroughPrisma(body: string): any {
  const script = `
    const { createPrismaClient } = require(${JSON.stringify(path.join(ROOT, 'dist/prisma/create-client.js'))});
    const { createRunStore } = require(${JSON.stringify(path.join(ROOT, 'dist/server/store/run-store.js'))});
    const prisma = createPrismaClient(${JSON.stringify(file)});
    const store = createRunStore(prisma, null);
    (${body})(store).then((out) => { process.stdout.write(JSON.stringify(out)); return prisma.$disconnect(); });
  `;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 }));
}

const envelope = (runId: string, seq: number, type: string, payload: unknown, at: Date, userId = 'u1', threadId = 't1'): RunEventEnvelope =>
  ({ type, event_id: `${runId}-${seq}`, seq, run_id: runId, thread_id: threadId, user_id: userId, agent_name: 'a', timestamp: at.toISOString(), payload }) as RunEventEnvelope;

test('rows written by the prepared statements read back through Prisma: dates, order, lookups by time', async () => {
  const at = new Date('2026-11-26T10:00:00.123Z');
  const run = await store.acceptRun({
    id: 'run-1', userId: 'u1', threadId: null, newThreadId: 't1', agentName: 'a', input: { text: 'hello there' },
    correlationId: 'corr-1', requestId: 'req-1', firstEvent: envelope('run-1', 1, 'message_received', { correlation_id: 'corr-1' }, at) as never,
  });
  expect(run).toMatchObject({ id: 'run-1', threadId: 't1', status: 'queued', queuedAt: at });
  await store.markRunning('run-1', 'cell1-g1', 7, new Date(at.getTime() + 5), 1);
  await store.appendEvents([envelope('run-1', 2, 'agent_started', { status: 'running' }, at), envelope('run-1', 3, 'partial_result', { text: 'hi' }, at)]);
  const done = new Date(at.getTime() + 50);
  await store.finishRun('run-1', 't1', 'completed', null, 'hi', envelope('run-1', 4, 'agent_completed', { status: 'completed' }, done) as never, null, 'hi');

  const read = readThroughPrisma(`async (store) => {
    const run = await store.findRun('u1', 'run-1');
    return {
      run,
      events: (await store.listEvents(run, 0, 10)).map((e) => [e.seq, e.type, e.timestamp]),
      // Prisma compares DateTime columns as text: only rows in its own format are found by these filters.
      byCorrelation: (await store.findRunByCorrelation('u1', 'corr-1', ${at.getTime() - 1}))?.id ?? null,
      byCorrelationLater: (await store.findRunByCorrelation('u1', 'corr-1', ${at.getTime() + 1}))?.id ?? null,
      threadsBefore: (await store.listThreads('u1', 10, new Date(${done.getTime() + 1}))).map((t) => t.id),
      threadsBeforeDone: (await store.listThreads('u1', 10, new Date(${done.getTime()}))).map((t) => t.id),
      messages: (await store.listMessages('t1', 10, 0)).map((m) => [m.role, m.content, m.status]),
    };
  }`);
  expect(read.run).toMatchObject({
    status: 'completed', result: 'hi', cellId: 'cell1-g1', workerId: 7, attempts: 1, input: { text: 'hello there' },
    queuedAt: at.toISOString(), startedAt: new Date(at.getTime() + 5).toISOString(), finishedAt: done.toISOString(),
  });
  expect(read.events).toEqual([
    [1, 'message_received', at.toISOString()],
    [2, 'agent_started', at.toISOString()],
    [3, 'partial_result', at.toISOString()],
    [4, 'agent_completed', done.toISOString()],
  ]);
  expect(read.byCorrelation).toBe('run-1');
  expect(read.byCorrelationLater).toBeNull();
  expect(read.threadsBefore).toEqual(['t1']);
  expect(read.threadsBeforeDone).toEqual([]);
  expect(read.messages).toEqual([
    ['user', 'hello there', 'complete'],
    ['assistant', 'hi', 'complete'],
  ]);
});

test('a failing write fails alone: the writes committed with it in the same turn still land', async () => {
  const at = new Date();
  const good = (id: string) =>
    store.acceptRun({ id, userId: 'u2', threadId: null, newThreadId: `t-${id}`, agentName: 'a', input: { text: id }, correlationId: null, requestId: id, firstEvent: envelope(id, 1, 'message_received', {}, at, 'u2', `t-${id}`) as never });
  // Same turn: one commit. The middle one continues a thread that does not exist.
  const results = await Promise.allSettled([
    good('ok-1'),
    store.acceptRun({ id: 'bad', userId: 'u2', threadId: 'no-such-thread', newThreadId: 'unused', agentName: 'a', input: { text: 'x' }, correlationId: null, requestId: 'bad', firstEvent: envelope('bad', 1, 'message_received', {}, at, 'u2') as never }),
    good('ok-2'),
  ]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  const db = new Database(file, { readonly: true });
  try {
    const count = (sql: string, id: string) => (db.prepare(sql).get(id) as { n: number }).n;
    expect(count('SELECT COUNT(*) AS n FROM "Run" WHERE "id" = ?', 'ok-1')).toBe(1);
    expect(count('SELECT COUNT(*) AS n FROM "Run" WHERE "id" = ?', 'ok-2')).toBe(1);
    // Nothing of the failed one is left half-written.
    expect(count('SELECT COUNT(*) AS n FROM "Run" WHERE "id" = ?', 'bad')).toBe(0);
    expect(count('SELECT COUNT(*) AS n FROM "RunEvent" WHERE "runId" = ?', 'bad')).toBe(0);
    expect(count('SELECT COUNT(*) AS n FROM "Message" WHERE "runId" = ?', 'bad')).toBe(0);
  } finally {
    db.close();
  }
  expect(writes.commits.stats.retriedAlone).toBeGreaterThanOrEqual(3);
});

/**
 * A run service on the real store, with stand-in cells: `answering` cells start and finish a run within the
 * send that assigns it (the fastest cell there is), `dead` ones record what is sent as undelivered. Runs go
 * to the first cell until `pick(cell)` says otherwise.
 */
function serviceRig(cells: { id: string; kind: 'answering' | 'dead'; events?: number }[]) {
  const delivered: RunEventEnvelope[] = [];
  const log = createLogger('silent');
  const metrics = createMetrics(() => ({}) as never, { alertActiveContexts: 100 });
  const relay = createEventRelay({ store, broadcast: (_user, e) => delivered.push(e), metrics, log });
  let service: RunService;
  const handles = cells.map(({ id, kind, events = 0 }) => {
    const cell = {
      id, state: 'ready', quarantine: false, runs: new Map(), lastBusyAt: 0, lastThreadKillAt: null, freeSlots: 4, undelivered: new Set<string>(),
      scratch: { open: (runId: string) => `/nonexistent/${runId}`, close: () => undefined },
      recentUsers: new Map<string, number>(),
      send(msg: FrontToCell) {
        if (msg.type !== 'run') return;
        const runId = msg.run.runId;
        if (kind === 'dead') return void cell.undelivered.add(runId);
        service.onCellMessage(handle, { type: 'run_started', runId, workerId: 1, startedAt: Date.now() });
        for (let i = 0; i < events; i++) service.onCellMessage(handle, { type: 'run_event', runId, event: { type: 'partial_result', payload: { text: 'x' }, timestamp: Date.now() } as never });
        service.onCellMessage(handle, { type: 'run_finished', runId, outcome: { status: 'completed', result: 'x', executionTimeMs: 0 }, report: null });
      },
    };
    const handle = cell as unknown as CellHandle & { undelivered: Set<string> };
    return handle;
  });
  let picked = handles[0];
  const supervisor = {
    cells: () => handles,
    pick: () => picked,
    pickQuarantine: () => null,
    agents: () => [{ name: 'fast', repeatable: true, source: 'plugin', description: null }],
  } as unknown as CellSupervisor;
  service = createRunService({
    store, relay, metrics, log, cells: () => supervisor,
    config: { maxQueuedRuns: 100, userMaxConcurrentRuns: 100, userMaxQueuedRuns: 100, maxRunAttempts: 3, runTimeoutMs: 5000, cancelGraceMs: 100 },
  });
  const start = (userId: string, text: string) => service.start(userId, { agent: 'fast', input: { text }, threadId: null, correlationId: null, multitask: 'enqueue' });
  const stop = async () => {
    await service.drain(0);
    metrics.stop();
  };
  return { service, delivered, cells: handles, pick: (cell: CellHandle) => (picked = cell as typeof picked), start, stop };
}

test("a run's events never overtake its event 1, even when its cell answers at once", async () => {
  const { service, delivered, start, stop } = serviceRig([{ id: 'cell1-g1', kind: 'answering', events: 1 }]);
  try {
    const started = [];
    for (let i = 0; i < 5; i++) {
      const run = await start('u3', `r${i}`);
      // Another run's completion pumps the queue in this same turn, before the acknowledgement's turn ends.
      service.pump();
      started.push(run.id);
    }
    await Promise.all(started.map((id) => service.settled(id)));
    for (const id of started) {
      const seqs = delivered.filter((e) => e.run_id === id).map((e) => e.seq);
      expect(seqs).toEqual([1, 2, 3, 4]);
    }
  } finally {
    await stop();
  }
});

test('a run sent to a cell in the instant it died, never delivered, is dispatched again without suspicion', async () => {
  const { service, delivered, cells, pick, start, stop } = serviceRig([
    { id: 'cell1-g1', kind: 'dead' },
    { id: 'cell2-g1', kind: 'answering' },
  ]);
  const [dead, live] = cells;
  try {
    const run = await start('u4', 'probe');
    service.pump();
    expect(dead.undelivered.has(run.id)).toBe(true);
    pick(live);
    service.onCellExit(dead, { cause: 'killed', error: { code: 'WORKER_CRASHED', message: 'killed by SIGKILL' } } as never, [run.id]);
    await service.settled(run.id);
    const events = delivered.filter((e) => e.run_id === run.id);
    expect(events.map((e) => e.type)).toEqual(['message_received', 'agent_started', 'agent_completed']);
    expect(events.at(-1)!.payload).toMatchObject({ status: 'completed' });
    const row = new Database(file, { readonly: true });
    try {
      expect(row.prepare('SELECT "attempts", "cellId", "status" FROM "Run" WHERE "id" = ?').get(run.id)).toEqual({ attempts: 1, cellId: 'cell2-g1', status: 'completed' });
    } finally {
      row.close();
    }
  } finally {
    await stop();
  }
});

test('DB_SYNCHRONOUS sets what the write connection really runs with', () => {
  expect(writes.synchronousLevel()).toBe(1); // the default, normal
  const full = createRunWrites(file, { busyTimeoutMs: 1000, synchronous: 'full' });
  try {
    expect(full.synchronousLevel()).toBe(2);
  } finally {
    full.close();
  }
});

test('a failure that is not one write\'s own (the database busy or failing) fails the whole batch at once, nothing half-written', async () => {
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY)');
  const insert = db.prepare('INSERT INTO t (id) VALUES (?)');
  const g = createGroupCommit(db, (err: unknown) => /^SQLITE_CONSTRAINT/.test(String((err as { code?: unknown }).code)));
  let attempts = 0;
  const results = await Promise.allSettled([
    g.run(() => insert.run(1)),
    g.run(() => {
      attempts++;
      throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    }),
    g.run(() => insert.run(2)),
  ]);
  expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
  expect(attempts).toBe(1); // not retried write by write
  expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 0 });
  // A constraint is one write's own failure: only it fails.
  const again = await Promise.allSettled([g.run(() => insert.run(3)), g.run(() => insert.run(3)), g.run(() => insert.run(4))]);
  expect(again.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  db.close();
});

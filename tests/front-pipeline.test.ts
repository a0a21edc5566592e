/**
 * The front's run pipeline below the sockets, on the test store (a real SQLite file, or a real PostgreSQL
 * database with ATOLL_TEST_DATABASE=postgresql): the group-committed writes (read back through Prisma exactly
 * as Prisma's own rows), a failing write that must not take its batch down, and the order of a run's events
 * when its cell answers before the acknowledging turn has ended. Then each store's group commit on its own:
 * a failure that is not one write's fault fails the whole batch.
 *
 * Prisma's query compiler is loaded with a dynamic import that Jest's module sandbox refuses, so Prisma
 * reads run in a plain Node child process (readThroughPrisma).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { ChildProcess } from 'node:child_process';
import { CellHandle } from '../server/cells/cell-handle';
import type { CellSupervisor } from '../server/cells/supervisor';
import { createLogger } from '../server/logger';
import { createMetrics } from '../server/metrics';
import type { FrontToCell, RunOutcome } from '../protocol/cell-messages';
import type { RunEventEnvelope } from '../protocol/events';
import { createEventRelay } from '../server/runs/event-relay';
import { createRunService, type RunService } from '../server/runs/run-service';
import { createPgGroupCommit } from '../server/store/postgresql/group-commit';
import { createGroupCommit } from '../server/store/sqlite/group-commit';
import { createRunWrites } from '../server/store/sqlite/run-writes';
import { createAccepting } from '../server/shared/in-process/accepting';
import type { RunRecord, RunStore } from '../server/store/store';
import { openFrontStore, readThroughPrisma, type FrontStore } from './helpers/front-store';
import { queryTestDatabase, TEST_STORE } from './helpers/test-database';

const onSqlite = TEST_STORE === 'sqlite' ? test : test.skip;
const onPostgresql = TEST_STORE === 'postgresql' ? test : test.skip;

let dir: string;
let front: FrontStore;
let store: RunStore;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-pipeline-'));
  front = await openFrontStore(dir);
  store = front.store;
});
afterAll(async () => {
  await front?.close();
  // Retried: SQLite may still be removing its -wal and -shm files as the folder is emptied (ENOTEMPTY once, busy).
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
});

const envelope = (runId: string, seq: number, type: string, payload: unknown, at: Date, userId = 'u1', threadId = 't1'): RunEventEnvelope =>
  ({ type, event_id: `${runId}-${seq}`, seq, run_id: runId, thread_id: threadId, user_id: userId, agent_name: 'a', timestamp: at.toISOString(), payload }) as RunEventEnvelope;

test('rows written by the prepared statements read back through Prisma: dates, order, lookups by time', async () => {
  const at = new Date('2026-11-26T10:00:00.123Z');
  const run = await store.acceptRun({
    id: 'run-1', userId: 'u1', threadId: null, newThreadId: 't1', agentName: 'a', input: { text: 'hello there' },
    correlationId: 'corr-1', requestId: 'req-1', firstEvent: envelope('run-1', 1, 'message_received', { correlation_id: 'corr-1' }, at) as never, correlationSince: 0,
  });
  expect(run).toMatchObject({ id: 'run-1', threadId: 't1', status: 'queued', queuedAt: at });
  await store.markRunning('run-1', 'cell1-g1', 7, new Date(at.getTime() + 5), 1);
  await store.appendEvents([envelope('run-1', 2, 'agent_started', { status: 'running' }, at), envelope('run-1', 3, 'partial_result', { text: 'hi' }, at)]);
  const done = new Date(at.getTime() + 50);
  await store.finishRun('run-1', 't1', 'completed', null, 'hi', envelope('run-1', 4, 'agent_completed', { status: 'completed' }, done) as never, null, 'hi');

  const read = readThroughPrisma(front.url, `async (store) => {
    const run = await store.findRun('u1', 'run-1');
    return {
      run,
      events: (await store.listEvents(run, 0, 10)).map((e) => [e.seq, e.type, e.timestamp]),
      // On SQLite Prisma compares DateTime columns as text: only rows in its own format are found by these filters.
      byCorrelation: (await store.findRunByCorrelation('u1', 'corr-1', ${at.getTime() - 1}))?.id ?? null,
      byCorrelationLater: (await store.findRunByCorrelation('u1', 'corr-1', ${at.getTime() + 1}))?.id ?? null,
      threadsBefore: (await store.listThreads('u1', 10, { updatedAt: new Date(${done.getTime() + 1}), threadId: null })).map((t) => t.id),
      threadsBeforeDone: (await store.listThreads('u1', 10, { updatedAt: new Date(${done.getTime()}), threadId: null })).map((t) => t.id),
      // At the same millisecond, the threads with a lower id: none lower than t1, t1 itself after a higher one.
      threadsAfterT1: (await store.listThreads('u1', 10, { updatedAt: new Date(${done.getTime()}), threadId: 't1' })).map((t) => t.id),
      threadsAfterT2: (await store.listThreads('u1', 10, { updatedAt: new Date(${done.getTime()}), threadId: 't2' })).map((t) => t.id),
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
  expect(read.threadsAfterT1).toEqual([]);
  expect(read.threadsAfterT2).toEqual(['t1']);
  expect(read.messages).toEqual([
    ['user', 'hello there', 'complete'],
    ['assistant', 'hi', 'complete'],
  ]);
});

test('a page cut by size reads about a page: 40 events of 100 KB, 1,000 asked, 1 MiB allowed, 12 read (event 1, ten that fit, the one past the size so the cut shows)', async () => {
  const at = new Date('2026-11-26T11:00:00.000Z');
  const big = 'x'.repeat(600_000);
  const accept = (id: string, first: boolean) =>
    store.acceptRun({
      id, userId: 'u-size', threadId: first ? null : 't-size', newThreadId: 't-size', agentName: 'a', input: { text: big },
      correlationId: null, requestId: `req-${id}`, firstEvent: envelope(id, 1, 'message_received', {}, at, 'u-size', 't-size') as never, correlationSince: 0,
    });
  await accept('size-1', true);
  await store.appendEvents(Array.from({ length: 40 }, (_, i) => envelope('size-1', i + 2, 'partial_result', { text: 'e'.repeat(100_000) }, at, 'u-size', 't-size')));
  for (const id of ['size-2', 'size-3', 'size-4']) await accept(id, false);
  const read = readThroughPrisma(front.url, `async (store) => {
    const run = await store.findRun('u-size', 'size-1');
    const seqs = async (after, limit, maxBytes) => (await store.listEvents(run, after, limit, maxBytes)).map((e) => e.seq);
    const lengths = async (limit, maxBytes) => (await store.listMessages('t-size', limit, 0, maxBytes)).map((m) => m.content.length);
    return {
      cut: await seqs(0, 1000, ${1024 * 1024}),
      uncut: await seqs(0, 1000),
      fewerAsked: await seqs(0, 5, ${1024 * 1024}),
      fromTheMiddle: await seqs(35, 1000, ${1024 * 1024}),
      pastTheEnd: await seqs(41, 1000, ${1024 * 1024}),
      oneLargerThanTheCut: await seqs(1, 1000, 50_000),
      messagesCut: await lengths(100, ${1024 * 1024}),
      messagesUncut: await lengths(100),
    };
  }`);
  // Event 1 is small: it and ten of 100 KB stay within 1 MiB, the twelfth passes it.
  expect(read.cut).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
  expect(read.uncut).toHaveLength(41);
  expect(read.fewerAsked).toEqual([1, 2, 3, 4, 5]);
  expect(read.fromTheMiddle).toEqual([36, 37, 38, 39, 40, 41]);
  expect(read.pastTheEnd).toEqual([]);
  // Even the first alone is past the size: two, so the caller's cut falls between them.
  expect(read.oneLargerThanTheCut).toEqual([2, 3]);
  // Messages alike: two user messages of 600 KB pass 1 MiB.
  expect(read.messagesCut).toEqual([600_000, 600_000]);
  expect(read.messagesUncut).toHaveLength(4);
});

test("every write stores its row's size as length() counts the text (characters, not bytes or UTF-16 units): accept, events, finish", async () => {
  const at = new Date('2026-11-26T12:00:00.000Z');
  // 'é' is 2 bytes in UTF-8, '🙂' 4 bytes and 2 UTF-16 units: each is one character to length() on both databases.
  const text = 'héllo 🙂';
  await store.acceptRun({
    id: 'sized', userId: 'u-sized', threadId: null, newThreadId: 't-sized', agentName: 'a', input: { text },
    correlationId: null, requestId: 'req-sized', firstEvent: envelope('sized', 1, 'message_received', { text }, at, 'u-sized', 't-sized') as never, correlationSince: 0,
  });
  await store.appendEvents([envelope('sized', 2, 'partial_result', { text: text.repeat(3) }, at, 'u-sized', 't-sized')]);
  await store.finishRun('sized', 't-sized', 'completed', null, text, envelope('sized', 3, 'agent_completed', { status: 'completed' }, at, 'u-sized', 't-sized') as never, null, text);
  const events = await queryTestDatabase<{ size: number; n: number }>(front.url, 'SELECT "size", length("payload") AS n FROM "RunEvent" WHERE "runId" = ? ORDER BY "seq"', ['sized']);
  const messages = await queryTestDatabase<{ size: number; n: number }>(front.url, 'SELECT "size", length("content") AS n FROM "Message" WHERE "runId" = ? ORDER BY "id"', ['sized']);
  const chars = (v: unknown) => [...JSON.stringify(v)].length;
  expect(events.map((e) => Number(e.size))).toEqual([chars({ text }), chars({ text: text.repeat(3) }), chars({ status: 'completed' })]);
  expect(messages.map((m) => Number(m.size))).toEqual([7, 7]);
  // No write of this file's tests left a row whose size is not its text's length().
  const off = async (sql: string) => Number((await queryTestDatabase<{ n: number }>(front.url, sql))[0]!.n);
  expect(await off('SELECT COUNT(*) AS n FROM "RunEvent" WHERE "size" <> length("payload")')).toBe(0);
  expect(await off('SELECT COUNT(*) AS n FROM "Message" WHERE "size" <> length("content")')).toBe(0);
});

test('a failing write fails alone: the writes committed with it in the same turn still land', async () => {
  const at = new Date();
  const good = (id: string) =>
    store.acceptRun({ id, userId: 'u2', threadId: null, newThreadId: `t-${id}`, agentName: 'a', input: { text: id }, correlationId: null, requestId: id, firstEvent: envelope(id, 1, 'message_received', {}, at, 'u2', `t-${id}`) as never, correlationSince: 0 });
  // Same turn: one commit. The middle one continues a thread that does not exist.
  const results = await Promise.allSettled([
    good('ok-1'),
    store.acceptRun({ id: 'bad', userId: 'u2', threadId: 'no-such-thread', newThreadId: 'unused', agentName: 'a', input: { text: 'x' }, correlationId: null, requestId: 'bad', firstEvent: envelope('bad', 1, 'message_received', {}, at, 'u2') as never, correlationSince: 0 }),
    good('ok-2'),
  ]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  const count = async (sql: string, id: string) => (await queryTestDatabase<{ n: number }>(front.url, sql, [id]))[0]!.n;
  expect(await count('SELECT COUNT(*) AS n FROM "Run" WHERE "id" = ?', 'ok-1')).toBe(1);
  expect(await count('SELECT COUNT(*) AS n FROM "Run" WHERE "id" = ?', 'ok-2')).toBe(1);
  // Nothing of the failed one is left half-written.
  expect(await count('SELECT COUNT(*) AS n FROM "Run" WHERE "id" = ?', 'bad')).toBe(0);
  expect(await count('SELECT COUNT(*) AS n FROM "RunEvent" WHERE "runId" = ?', 'bad')).toBe(0);
  expect(await count('SELECT COUNT(*) AS n FROM "Message" WHERE "runId" = ?', 'bad')).toBe(0);
  // They shared one commit, which failed, and were applied again one by one.
  expect(front.retriedAlone()).toBeGreaterThanOrEqual(3);
});

test('agent text with NUL is stored alike on every store (NUL as U+FFFD) and takes no other write of its commit down', async () => {
  const at = new Date();
  const ids = ['nul-answer', 'nul-error', 'nul-neighbour'];
  for (const id of ids) {
    await store.acceptRun({ id, userId: 'u6', threadId: null, newThreadId: `t-${id}`, agentName: 'a', input: { text: id }, correlationId: null, requestId: id, firstEvent: envelope(id, 1, 'message_received', {}, at, 'u6', `t-${id}`) as never, correlationSince: 0 });
  }
  const done = new Date(at.getTime() + 10);
  const finish = (id: string, status: 'completed' | 'failed', result: string | null, message: string | null, partial = '') =>
    store.finishRun(id, `t-${id}`, status, message === null ? null : ({ code: 'AGENT_ERROR', message } as never), result, envelope(id, 2, 'agent_completed', { status }, done, 'u6', `t-${id}`) as never, null, partial);
  // One turn: one commit, on either store.
  const results = await Promise.allSettled([finish('nul-answer', 'completed', 'x\u0000y', null), finish('nul-error', 'failed', null, 'bo\u0000om', 'part\u0000ial'), finish('nul-neighbour', 'completed', 'fine', null)]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
  const read = readThroughPrisma(front.url, `async (store) => {
    const out = {};
    for (const id of ${JSON.stringify(ids)}) {
      const run = await store.findRun('u6', id);
      out[id] = { status: run.status, result: run.result, error: run.error, messages: (await store.listMessages('t-' + id, 10, 0)).map((m) => [m.role, m.content, m.status]) };
    }
    return out;
  }`);
  expect(read['nul-answer']).toEqual({ status: 'completed', result: 'x\u0000y', error: null, messages: [['user', 'nul-answer', 'complete'], ['assistant', 'x\uFFFDy', 'complete']] });
  expect(read['nul-error']).toEqual({ status: 'failed', result: null, error: { code: 'AGENT_ERROR', message: 'bo\uFFFDom' }, messages: [['user', 'nul-error', 'complete'], ['assistant', 'part\uFFFDial', 'interrupted']] });
  expect(read['nul-neighbour']).toMatchObject({ status: 'completed', result: 'fine' });
});

onPostgresql('PostgreSQL: a value its column cannot take (SQLSTATE class 22) fails its own write alone', async () => {
  const at = new Date();
  for (const id of ['range-bad', 'range-good']) {
    await store.acceptRun({ id, userId: 'u7', threadId: null, newThreadId: `t-${id}`, agentName: 'a', input: { text: id }, correlationId: null, requestId: id, firstEvent: envelope(id, 1, 'message_received', {}, at, 'u7', `t-${id}`) as never, correlationSince: 0 });
  }
  const before = front.retriedAlone();
  // "workerId" is an INTEGER: 2^31 is out of its range (22003), a bad value of this write, not the database's fault.
  const results = await Promise.allSettled([store.markRunning('range-bad', 'cell1-g1', 2 ** 31, at, 1), store.markRunning('range-good', 'cell1-g1', 1, at, 1)]);
  expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
  expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: '22003' });
  expect(front.retriedAlone() - before).toBe(2);
  const rows = await queryTestDatabase(front.url, 'SELECT "id", "status" FROM "Run" WHERE "userId" = ? ORDER BY "id"', ['u7']);
  expect(rows).toEqual([{ id: 'range-bad', status: 'queued' }, { id: 'range-good', status: 'running' }]);
});

/**
 * How a stand-in cell process behaves: `instant` answers a run within the very call that assigns it (faster
 * than any real cell, which answers after an IPC round trip); `answering` is a live child whose IPC channel
 * delivers each batch, and which answers every run in it; `gone` is a child whose channel already closed;
 * `failing` is connected but its channel write fails (EPIPE, as when the cell dies mid-write); `held` starts each
 * run it receives and finishes it when the test says (`finish`), or cancelled when the front cancels it.
 * The stand-ins only carry raw messages: whether an assignment reached its cell is the real CellHandle's call.
 */
type CellKind = 'instant' | 'answering' | 'gone' | 'failing' | 'held';

/** A run service on the real store, with real CellHandles around stand-in child processes. */
/** Each stand-in is the first generation of its slot: `cell1` runs as `cell1-g1`. */
function serviceRig(cells: { slot: string; kind: CellKind; events?: number }[], runStore: RunStore = store) {
  const delivered: RunEventEnvelope[] = [];
  const held = new Map<string, CellHandle>();
  const written: FrontToCell[][] = [];
  const log = createLogger('silent');
  const metrics = createMetrics({ alertActiveContexts: 100, nodeId: 'front-pipeline' });
  const relay = createEventRelay({ store: runStore, bus: { publish: (e) => delivered.push(e) }, metrics, log });
  let service: RunService;
  const scratch = { dir: '/nonexistent', open: (runId: string) => `/nonexistent/${runId}`, close: () => undefined, removeAll: () => undefined };
  /** The stand-in cell reports the run's end. */
  const ended = (handle: CellHandle, runId: string, outcome: RunOutcome) => service.onCellMessage(handle, { type: 'run_finished', runId, outcome, report: null });
  const completed: RunOutcome = { status: 'completed', result: 'x', executionTimeMs: 0 };
  const answer = (handle: CellHandle, runId: string, events: number) => {
    service.onCellMessage(handle, { type: 'run_started', runId, workerId: 1, startedAt: Date.now() });
    for (let i = 0; i < events; i++) service.onCellMessage(handle, { type: 'run_event', runId, event: { type: 'partial_result', payload: { text: 'x' }, timestamp: Date.now() } as never });
    ended(handle, runId, completed);
  };
  const handles = cells.map(({ slot, kind, events = 0 }) => {
    const child = {
      connected: kind !== 'gone',
      exitCode: null,
      signalCode: null,
      kill: () => true,
      send(batch: FrontToCell[], callback: (err: Error | null) => void) {
        if (kind === 'gone') throw new Error('the front wrote to a closed channel');
        written.push(batch);
        // Node reports a failed channel write to the send callback, asynchronously.
        if (kind === 'failing') return void setImmediate(() => callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })));
        setImmediate(() => callback(null));
        for (const msg of batch) {
          if (msg.type === 'cancel' && held.delete(msg.runId)) {
            ended(handle, msg.runId, { status: 'cancelled', error: { code: 'CANCELLED', message: 'stopped' }, executionTimeMs: 0 });
          }
          if (msg.type !== 'run') continue;
          if (kind !== 'held') answer(handle, msg.run.runId, events);
          else {
            service.onCellMessage(handle, { type: 'run_started', runId: msg.run.runId, workerId: 1, startedAt: Date.now() });
            held.set(msg.run.runId, handle);
          }
        }
        return true;
      },
    };
    const handle = new CellHandle(slot, 1, 0, child as unknown as ChildProcess, 4, false, scratch);
    handle.state = 'ready';
    // The instant cell skips the IPC batch: it answers inside the dispatch itself.
    if (kind === 'instant') handle.send = (msg: FrontToCell) => void (msg.type === 'run' && answer(handle, msg.run.runId, events));
    return handle;
  });
  let picked = handles[0];
  const supervisor = {
    cells: () => handles,
    pick: () => (picked.state === 'ready' ? picked : null), // a cell still starting takes no run
    pickQuarantine: () => null,
    agents: () => [{ name: 'fast', repeatable: true, source: 'plugin', description: null }],
  } as unknown as CellSupervisor;
  service = createRunService({
    store: runStore, relay, metrics, log, cells: supervisor, accepting: createAccepting(),
    settings: { maxQueuedRuns: 100, userMaxConcurrentRuns: 100, userMaxQueuedRuns: 100, maxRunAttempts: 3, cellKillerQuarantineMs: 600_000, runTimeoutMs: 5000, cancelGraceMs: 100, userMaxStoredBytes: 1_073_741_824 },
  });
  const start = (userId: string, text: string) => service.start(userId, { agent: 'fast', input: { text }, threadId: null, correlationId: null, multitask: 'enqueue' });
  const stop = async () => {
    await service.drain(0);
    metrics.stop();
  };
  /** A `held` cell's run ends now, completed. */
  const finish = (runId: string) => ended(held.get(runId)!, runId, completed);
  return { service, delivered, written, cells: handles, pick: (cell: CellHandle) => (picked = cell), start, stop, finish };
}

/** Resolves once `check` holds; the IPC stand-ins answer on later turns. */
async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("a run's events never overtake its event 1, even when its cell answers at once", async () => {
  const { service, delivered, start, stop } = serviceRig([{ slot: 'cell1', kind: 'instant', events: 1 }]);
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

/** The run's row as the store wrote it. */
async function runRow(runId: string) {
  return (await queryTestDatabase(front.url, 'SELECT "attempts", "cellId", "status" FROM "Run" WHERE "id" = ?', [runId]))[0];
}

test.each(['gone', 'failing'] as const)('a run sent to a cell whose channel is %s, never delivered, is dispatched again without suspicion', async (kind) => {
  const { service, delivered, written, cells, pick, start, stop } = serviceRig([
    { slot: 'cell1', kind },
    { slot: 'cell2', kind: 'answering' },
  ]);
  const [dead, live] = cells;
  try {
    const run = await start('u4', `probe-${kind}`);
    service.pump();
    // The CellHandle, not the stand-in, notices that the assignment never arrived.
    await until(() => dead.undelivered.has(run.id), 'the handle to mark the run undelivered');
    expect(written.flat().filter((m) => m.type === 'run').length).toBe(kind === 'failing' ? 1 : 0);
    pick(live);
    service.onCellExit(dead, { cause: 'killed', error: { code: 'WORKER_CRASHED', message: 'killed by SIGKILL' } } as never, [run.id]);
    await until(() => delivered.some((e) => e.run_id === run.id && e.type === 'agent_completed'), 'the run to complete on the other cell');
    await service.settled(run.id);
    const events = delivered.filter((e) => e.run_id === run.id);
    expect(events.map((e) => e.type)).toEqual(['message_received', 'agent_started', 'agent_completed']);
    expect(events.at(-1)!.payload).toMatchObject({ status: 'completed' });
    expect(await runRow(run.id)).toEqual({ attempts: 1, cellId: 'cell2-g1', status: 'completed' });
  } finally {
    await stop();
  }
});

/**
 * Two cells; the first takes a run (the assignment is written) and dies before its worker reports the start. The
 * death is told to the run service with the dead cell's channel read to its end or not (`drained`); the second
 * cell serves what is sent again.
 */
async function diesHoldingUnstartedRun(userId: string, drained: boolean) {
  const rig = serviceRig([
    { slot: 'cell1', kind: 'answering', events: 0 },
    { slot: 'cell2', kind: 'answering' },
  ]);
  const { service, written, cells, pick, start } = rig;
  const [first, second] = cells;
  first.child.send = ((batch: FrontToCell[], callback: (err: Error | null) => void) => {
    written.push(batch);
    setImmediate(() => callback(null));
    return true;
  }) as never;
  const run = await start(userId, `unstarted-${drained}`);
  service.pump();
  await until(() => written.flat().some((m) => m.type === 'run' && m.run.runId === run.id), 'the assignment to be written');
  await new Promise((r) => setImmediate(r));
  expect(first.undelivered.has(run.id)).toBe(false);
  pick(second);
  first.channelDrained = drained;
  service.onCellExit(first, { cause: 'killed', error: { code: 'WORKER_CRASHED', message: 'killed by SIGKILL' } } as never, [run.id]);
  const types = () => rig.delivered.filter((e) => e.run_id === run.id).map((e) => e.type);
  return { ...rig, run, types };
}

/**
 * A store whose `findRun` reads the row's status (with SQL: Prisma's client does not load inside Jest), then, once,
 * waits for `meanwhile` before it answers: what happens between a read and its answer.
 */
function heldReads() {
  const held: { meanwhile: (() => Promise<void>) | null } = { meanwhile: null };
  const runStore: RunStore = {
    ...store,
    async findRun(userId, runId) {
      const [row] = await queryTestDatabase<{ status: RunRecord['status'] }>(front.url, 'SELECT "status" FROM "Run" WHERE "id" = ? AND "userId" = ?', [runId, userId]);
      const then = held.meanwhile;
      held.meanwhile = null;
      await then?.();
      return row ? ({ id: runId, userId, status: row.status } as RunRecord) : null;
    },
  };
  return { runStore, held };
}

test("a stop's answer says how the run ended when it ended while the stop read its row, not that read's `running`", async () => {
  // The stop's read of the row is held until the run has completed and its end is written.
  const { runStore, held } = heldReads();
  const { service, delivered, start, stop, finish } = serviceRig([{ slot: 'cell1', kind: 'held' }], runStore);
  try {
    const run = await start('u8', 'held');
    await until(() => delivered.some((e) => e.run_id === run.id && e.type === 'agent_started'), 'the run to start');
    held.meanwhile = async () => {
      finish(run.id);
      await service.settled(run.id);
    };
    const stopped = await service.cancel('u8', run.id);
    expect(held.meanwhile).toBeNull(); // the read was held
    expect(stopped.status).toBe('completed');
    expect(delivered.filter((e) => e.run_id === run.id).map((e) => e.type)).toEqual(['message_received', 'agent_started', 'agent_completed']);
  } finally {
    await stop();
  }
});

test("a stop's answer says `running` of a run that started while the stop read its row as `queued`; the run ends cancelled", async () => {
  const { runStore, held } = heldReads();
  // No cell can take the run until the test picks one: it stays queued.
  const { service, delivered, start, stop, cells } = serviceRig([{ slot: 'cell1', kind: 'held' }], runStore);
  try {
    cells[0].state = 'starting';
    const run = await start('u9', 'queued');
    held.meanwhile = async () => {
      cells[0].state = 'ready';
      service.onCellReady(cells[0], null);
      await until(() => delivered.some((e) => e.run_id === run.id && e.type === 'agent_started'), 'the run to start');
    };
    const stopped = await service.cancel('u9', run.id);
    expect(held.meanwhile).toBeNull();
    expect(stopped.status).toBe('running');
    await service.settled(run.id);
    const end = delivered.filter((e) => e.run_id === run.id).at(-1)!;
    expect([end.type, (end.payload as { status: string }).status]).toEqual(['agent_completed', 'cancelled']);
  } finally {
    await stop();
  }
});

test("a stop of a run that ended here but whose end is not written yet (its write kept while the storage fails) answers at once how it ended", async () => {
  // The group commit keeps a run's terminal write, and retries it, for as long as the storage refuses it (a full disk,
  // PostgreSQL unreachable): reads still answer meanwhile, and the row says `running`. Stopping that run awaited the
  // write (run.settled): the stop's answer (stop_agent's ack, POST /v1/runs/:id/cancel) waited as long as the disk
  // stayed full, though requests are meant to fail or answer, never wait for the storage.
  let release!: () => void;
  const kept = new Promise<void>((resolve) => (release = resolve));
  const runStore: RunStore = {
    ...heldReads().runStore, // its reads through SQL (none held)
    finishRun: async (...args: Parameters<RunStore['finishRun']>) => {
      await kept;
      return store.finishRun(...args);
    },
  };
  const { service, delivered, start, stop, finish } = serviceRig([{ slot: 'cell1', kind: 'held' }], runStore);
  try {
    const run = await start('u10', 'kept');
    await until(() => delivered.some((e) => e.run_id === run.id && e.type === 'agent_started'), 'the run to start');
    finish(run.id); // completed; its terminal write is kept
    const answer = await Promise.race([service.cancel('u10', run.id), new Promise<null>((resolve) => setTimeout(resolve, 2000, null))]);
    expect(answer?.status ?? 'no answer within 2 s').toBe('completed');
    release();
    await service.settled(run.id);
    expect(delivered.filter((e) => e.run_id === run.id).map((e) => e.type)).toEqual(['message_received', 'agent_started', 'agent_completed']);
    expect((await runStore.findRun('u10', run.id))?.status).toBe('completed');
  } finally {
    release();
    await stop();
  }
});

test('a run its cell received but never reported started is dispatched again unsuspected once the dead cell\'s channel is read to its end', async () => {
  const { service, run, types, stop } = await diesHoldingUnstartedRun('u6', true);
  try {
    await until(() => types().includes('agent_completed'), 'the run to complete on the other cell');
    await service.settled(run.id);
    // No run_restarted, no quarantine: the client sees one ordinary run; the row counts both dispatches.
    expect(types()).toEqual(['message_received', 'agent_started', 'agent_completed']);
    expect(await runRow(run.id)).toEqual({ attempts: 2, cellId: 'cell2-g1', status: 'completed' });
  } finally {
    await stop();
  }
});

test('a run that did reach its cell is a suspect when the cell dies and its channel was not read to the end: it is not silently dispatched again', async () => {
  const { types, stop } = await diesHoldingUnstartedRun('u5', false);
  try {
    // Delivered, and its start may have died with the cell: possibly what killed it. It restarts as a suspect
    // (quarantine, none here), never silently queued again for a normal cell as if it had not been sent.
    await until(() => types().includes('run_restarted') || types().includes('agent_started'), 'the run to restart or start again');
    expect(types()).toEqual(['message_received', 'run_restarted']);
  } finally {
    await stop();
  }
});

onSqlite('DB_SYNCHRONOUS (SQLite) sets what the write connection really runs with', async () => {
  const file = front.url.slice('file:'.length);
  for (const [synchronous, level] of [[undefined, 1], ['normal', 1], ['full', 2]] as const) {
    const writes = createRunWrites(file, { busyTimeoutMs: 1000, synchronous, log: createLogger('silent') });
    try {
      expect([synchronous, writes.synchronousLevel()]).toEqual([synchronous, level]); // normal is the default
    } finally {
      await writes.close();
    }
  }
});

onSqlite('SQLite: a failure that is neither one write\'s own nor the storage\'s (a bug) fails the whole batch at once, nothing half-written', async () => {
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY)');
  const insert = db.prepare('INSERT INTO t (id) VALUES (?)');
  const g = createGroupCommit(db, (err: unknown) => /^SQLITE_CONSTRAINT/.test(String((err as { code?: unknown }).code)), createLogger('silent'));
  let attempts = 0;
  const results = await Promise.allSettled([
    g.run(() => insert.run(1)),
    g.run(() => {
      attempts++;
      throw Object.assign(new Error('no such table: gone'), { code: 'SQLITE_ERROR' });
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

onPostgresql('PostgreSQL: a failure that is not one write\'s own fails the whole batch at once, nothing half-written; a constraint fails alone', async () => {
  const pool = new pg.Pool({ connectionString: front.url, max: 1 });
  try {
    await pool.query('CREATE TABLE gc_probe (id INTEGER PRIMARY KEY)');
    type Item = { id: number } | { fail: 'division' };
    const batches: Item[][] = [];
    const g = createPgGroupCommit<Item>(
      pool,
      {
        statements: (items) => (
          batches.push(items),
          items.map((item) => ('fail' in item ? { name: 'gc_fail', text: 'SELECT 1 / 0', values: [] } : { name: 'gc_insert', text: 'INSERT INTO gc_probe (id) VALUES ($1)', values: [item.id] }))
        ),
        undo: () => [],
        isRequest: () => false,
        // What the real batching says: SQLSTATE class 23 (integrity) is a write's own fault; 22012 is not.
        isWriteError: (err) => /^23/.test(String((err as { code?: unknown }).code)),
        explain: (_item, err) => err,
      },
      createLogger('silent'),
    );
    const ids = async () => (await pool.query('SELECT id FROM gc_probe ORDER BY id')).rows.map((r) => r.id);
    const results = await Promise.allSettled([g.run({ id: 1 }), g.run({ fail: 'division' }), g.run({ id: 2 })]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(results.map((r) => (r as PromiseRejectedResult).reason?.code)).toEqual(['22012', '22012', '22012']);
    expect(batches).toHaveLength(1); // not retried write by write
    expect(await ids()).toEqual([]);
    // A constraint is one write's own failure: only it fails, the others of its commit land.
    batches.length = 0;
    const again = await Promise.allSettled([g.run({ id: 3 }), g.run({ id: 3 }), g.run({ id: 4 })]);
    expect(again.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((again[1] as PromiseRejectedResult).reason).toMatchObject({ code: '23505' });
    expect(batches.map((b) => b.length)).toEqual([3, 1, 1, 1]);
    expect(await ids()).toEqual([3, 4]);
    await g.close(1_000);
  } finally {
    await pool.end();
  }
});

onPostgresql('PostgreSQL: a value pg cannot convert fails its write alone before anything is sent; the requests batched with it land, and the database is not taken for unreachable', async () => {
  const pool = new pg.Pool({ connectionString: front.url, max: 1, pipeline: true } as pg.PoolConfig);
  try {
    await pool.query('CREATE TABLE gc_convert (id INTEGER PRIMARY KEY)');
    type Item = { id: number } | { unconvertible: true };
    const batches: Item[][] = [];
    const g = createPgGroupCommit<Item>(
      pool,
      {
        statements: (items) => (
          batches.push(items),
          items.map((item) => ({
            name: 'gc_convert_insert',
            text: 'INSERT INTO gc_convert (id) VALUES ($1)',
            // pg converts a value when it writes the statement: this one throws there.
            values: ['id' in item ? item.id : { toPostgres: () => { throw new Error('cannot convert this value'); } }],
          }))
        ),
        undo: () => [],
        // Requests: a failure of theirs that is not the server's answer would leave their COMMIT in doubt.
        isRequest: () => true,
        isWriteError: (err) => /^23/.test(String((err as { code?: unknown }).code)),
        explain: (_item, err) => err,
      },
      createLogger('silent'),
    );
    const results = await Promise.allSettled([g.run({ id: 1 }), g.run({ unconvertible: true }), g.run({ id: 2 })]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ message: 'cannot convert this value' });
    // The batch was tried whole, then write by write, and the unconvertible one was never half-committed with the others.
    expect(batches.map((b) => b.length)).toEqual([3, 1, 1, 1]);
    expect((await pool.query('SELECT id FROM gc_convert ORDER BY id')).rows.map((r) => r.id)).toEqual([1, 2]);
    expect(g.unreachable).toBe(false);
    await g.close(1_000);
  } finally {
    await pool.end();
  }
});

/** Resolves once `backend`'s transaction waits for a row lock another transaction holds. */
async function waitingForLock(observer: pg.Pool, backend: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { rows } = await observer.query(`SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1`, [backend]);
    if (rows[0]?.wait_event_type === 'Lock') return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`backend ${backend} never waited for a lock`);
}

onPostgresql('PostgreSQL: a batch the database rolls back for a deadlock with another transaction is sent again: its acknowledged writes land, none is lost', async () => {
  // The group commit's connection detects the deadlock first (deadlock_timeout 1 s against the other's 30 s), so
  // the database picks it as the victim, as it would pick either of two nodes' commits. PostgreSQL looks for a
  // deadlock once per wait, at deadlock_timeout: the other's second lock must be asked for within that second.
  const pool = new pg.Pool({ connectionString: front.url, max: 1, pipeline: true, options: '-c deadlock_timeout=1s' } as pg.PoolConfig);
  const other = new pg.Client({ connectionString: front.url, options: '-c deadlock_timeout=30s' });
  other.on('error', () => undefined);
  const observer = new pg.Pool({ connectionString: front.url, max: 1 });
  await other.connect();
  try {
    await pool.query('CREATE TABLE gc_deadlock (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)');
    await pool.query('INSERT INTO gc_deadlock VALUES (1, 0), (2, 0)');
    const backend = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const attempts: number[][] = [];
    const g = createPgGroupCommit<number[]>(
      pool,
      {
        // One acknowledged write (not a request) that changes rows 1 then 2, as a batch touches conversations in its order.
        statements: ([ids]) => (attempts.push(ids!), ids!.map((id) => ({ name: `gc_deadlock_${id}`, text: 'UPDATE gc_deadlock SET n = n + 1 WHERE id = $1', values: [id] }))),
        undo: () => [],
        isRequest: () => false,
        isWriteError: (err) => /^2[23]/.test(String((err as { code?: unknown }).code)),
        explain: (_item, err) => err,
      },
      createLogger('silent'),
    );
    // The other transaction holds row 2; the batch takes row 1 and waits for row 2; the other then asks for row 1.
    await other.query('BEGIN');
    await other.query('UPDATE gc_deadlock SET n = n + 10 WHERE id = 2');
    const written = g.run([1, 2]);
    await waitingForLock(observer, backend);
    const otherTakesRow1 = other.query('UPDATE gc_deadlock SET n = n + 10 WHERE id = 1');
    await otherTakesRow1; // granted once the database rolled the batch back
    await other.query('COMMIT');
    await expect(written).resolves.toBeUndefined();
    // The batch's statements were built once; its transaction ran twice (rolled back, then committed).
    expect(attempts).toEqual([[1, 2]]);
    expect((await pool.query('SELECT id, n FROM gc_deadlock ORDER BY id')).rows).toEqual([
      { id: 1, n: 11 },
      { id: 2, n: 11 },
    ]);
    expect(g.unreachable).toBe(false);
    await g.close(1_000);
  } finally {
    await other.end();
    await observer.end();
    await pool.end();
  }
});

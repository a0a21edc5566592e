/**
 * The cell's outbox to the front (workers/cell/fair-outbox.ts) on a fake channel whose writes complete when the
 * test says: one batch in the channel at a time, turns between workers, each worker's order kept, the cell's own
 * messages first, `written` once in the channel, everything at once before an exit.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { createFairOutbox } from '../../workers/cell/fair-outbox';
import type { CellToFront } from '../../protocol/cell-messages';

const tick = () => new Promise((r) => setImmediate(r));

function rig() {
  const batches: CellToFront[][] = [];
  const pending: ((err?: Error | null) => void)[] = [];
  const outbox = createFairOutbox(
    (batch, done) => {
      batches.push(batch);
      pending.push(done);
    },
    { shareBytes: 100, batchBytes: 300 },
  );
  const written = (err?: Error) => {
    const done = pending.shift();
    if (!done) throw new Error('no batch in the channel');
    done(err ?? null);
  };
  return { outbox, batches, written, inChannel: () => pending.length };
}

const started = (runId: string, workerId: number): CellToFront => ({ type: 'run_started', runId, workerId, startedAt: 1 });
const event = (runId: string, n: number): CellToFront => ({ type: 'run_event', runId, event: { type: 'agent_thinking', payload: { reasoning: String(n) }, timestamp: n } });
const finished = (runId: string): CellToFront => ({ type: 'run_finished', runId, outcome: { status: 'completed', result: 'x', executionTimeMs: 1 }, report: null });
const names = (batch: CellToFront[]) =>
  batch.map((m) => (m.type === 'run_event' ? `${m.runId}:${m.event.timestamp}` : 'runId' in m ? `${m.runId}:${m.type}` : m.type));

test('one batch is in the channel at a time; the next goes once it is taken', async () => {
  const { outbox, batches, written } = rig();
  outbox.send(started('a', 1));
  await tick();
  expect(batches).toHaveLength(1);
  outbox.send(event('a', 1), undefined, 50);
  outbox.flush();
  await tick();
  expect(batches).toHaveLength(1);
  written();
  await tick();
  expect(batches.map(names)).toEqual([['a:run_started'], ['a:1']]);
});

test("a worker's message sent after another worker's flood goes in the next batch, not behind the flood", async () => {
  const { outbox, batches, written, inChannel } = rig();
  outbox.send(started('flood', 1));
  outbox.send(started('small', 2));
  await tick();
  for (let i = 1; i <= 30; i++) outbox.send(event('flood', i), undefined, 100);
  outbox.send(event('small', 1), undefined, 10);
  written();
  await tick();
  // flood's turn (its share: one event), then small's, then flood's again until the batch is full.
  expect(names(batches[1])).toEqual(['flood:1', 'small:1', 'flood:2', 'flood:3']);
  while (inChannel() > 0) {
    written();
    await tick();
  }
  const floodOrder = batches.flat().filter((m) => m.type === 'run_event' && m.runId === 'flood').map((m) => (m as { event: { timestamp: number } }).event.timestamp);
  expect(floodOrder).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
});

test("a worker's messages keep their order across its runs, its end (worker_gone) after them; the cell's own go first", async () => {
  const { outbox, batches, written, inChannel } = rig();
  outbox.send(started('r1', 7));
  await tick();
  for (let i = 1; i <= 5; i++) outbox.send(event('r1', i), undefined, 100);
  outbox.send(finished('r1'));
  outbox.send(started('r2', 7));
  outbox.send(event('r2', 1), undefined, 100);
  outbox.send(finished('r2'));
  outbox.send({ type: 'worker_gone', workerId: 7 });
  outbox.send({ type: 'worker_retired', reason: 'user_switch' });
  // A run that never started (refused by every worker) has nothing queued before its end.
  outbox.send(finished('never'));
  written();
  await tick();
  expect(names(batches[1]).slice(0, 2)).toEqual(['worker_retired', 'never:run_finished']);
  while (inChannel() > 0) {
    written();
    await tick();
  }
  expect(batches.flatMap(names).filter((n) => n.startsWith('r') || n === 'worker_gone')).toEqual([
    'r1:run_started',
    'r1:1',
    'r1:2',
    'r1:3',
    'r1:4',
    'r1:5',
    'r1:run_finished',
    'r2:run_started',
    'r2:1',
    'r2:run_finished',
    'worker_gone',
  ]);
});

test('`written` is called once its batch is in the channel, and not if the write failed', async () => {
  const { outbox, written } = rig();
  const calls: string[] = [];
  outbox.send(started('a', 1), () => calls.push('a'));
  await tick();
  expect(calls).toEqual([]);
  written();
  expect(calls).toEqual(['a']);
  outbox.send(started('b', 2), () => calls.push('b'));
  await tick();
  written(new Error('channel closed'));
  expect(calls).toEqual(['a']);
});

test('drain sends everything left at once, even with a batch still in the channel', async () => {
  const { outbox, batches } = rig();
  outbox.send(started('a', 1));
  await tick();
  for (let i = 1; i <= 20; i++) outbox.send(event('a', i), undefined, 100);
  outbox.send(finished('a'));
  outbox.drain();
  expect(batches).toHaveLength(2);
  expect(batches[1]).toHaveLength(21);
});

test("a worker's database statements count their size: a flood of them takes a share, not a batch of megabytes", async () => {
  // Default shares. The dispatcher forwards a run's db_query with no size (only events come measured); agent code
  // can send as many as it likes, each up to MAX_SQL_CHARS of statement and MAX_ARGS string arguments of 64 Ki.
  const batches: CellToFront[][] = [];
  const pending: ((err?: Error | null) => void)[] = [];
  const outbox = createFairOutbox((batch, done) => {
    batches.push(batch);
    pending.push(done);
  });
  outbox.send(started('flood', 1));
  outbox.send(started('small', 2));
  await tick();
  const sql = `SELECT '${'x'.repeat(16_000)}'`;
  for (let i = 0; i < 300; i++) outbox.send({ type: 'db_query', runId: 'flood', queryId: i, kind: 'query', query: { sql, args: [], argTypes: [] } });
  outbox.send(event('small', 1), undefined, 10);
  pending.shift()!(null);
  await tick();
  const next = batches[1];
  expect(names(next)).toContain('small:1');
  // About BATCH_BYTES (64 KiB), give or take one message: not 256 statements of 16 KB (4 MB) ahead of the event.
  expect(v8.serialize(next).length).toBeLessThan(2 * 64 * 1024 + 20_000);
});

test('what a lane has sent is not kept while the lane stays busy', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  // A channel that keeps nothing it wrote.
  const pending: ((err?: Error | null) => void)[] = [];
  const outbox = createFairOutbox((_batch, done) => void pending.push(done), { shareBytes: 100, batchBytes: 300 });
  const written = () => pending.shift()!(null);
  outbox.send(started('a', 1));
  await tick();
  // One large event, then a busy lane: a few hundred more, each sent a batch at a time, more always behind them.
  let first: WeakRef<object> | null = null;
  (() => {
    const msg: CellToFront = { type: 'run_event', runId: 'a', event: { type: 'agent_thinking', payload: { reasoning: 'x'.repeat(1 << 20) }, timestamp: 0 } };
    first = new WeakRef(msg);
    outbox.send(msg, undefined, 100);
  })();
  for (let i = 1; i <= 600; i++) outbox.send(event('a', i), undefined, 100);
  // 3 events a batch here: 100 batches leave half the lane queued.
  for (let i = 0; i < 100; i++) {
    written();
    await tick();
  }
  gc();
  await tick();
  gc();
  expect(first!.deref()).toBeUndefined();
});

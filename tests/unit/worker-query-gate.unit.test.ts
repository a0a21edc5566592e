/**
 * What the worker query gate answers when an allowed statement fails: DB_UNAVAILABLE (retryable) when the
 * store says the database cannot be reached, DB_QUERY_FAILED otherwise. The gate's refusals are db-wall.test.ts's.
 */
import type { SqlDriverAdapter } from '@prisma/driver-adapter-utils';
import type { CellHandle } from '../../server/cells/cell-handle';
import { createLogger } from '../../server/logger';
import type { LiveRun } from '../../server/runs/live-run';
import { createWorkerQueryGate, type LearnedStatement } from '../../server/store/worker-query-gate';

const SQL = 'SELECT "id" FROM "Thread" WHERE "userId" = $1';
const statement: LearnedStatement = { index: 0, kind: 'query', sql: SQL, argTypes: [{ scalarType: 'string', dbType: 'TEXT', arity: 'scalar' }], userArgs: [0], messagePage: null };

async function answerTo(failure: Error, unavailable: (err: unknown) => boolean): Promise<unknown> {
  const sent: unknown[] = [];
  const cell = { id: 'cell1-g1', send: (m: unknown) => sent.push(m) } as unknown as CellHandle;
  const run = { id: 'r1', userId: 'u1', threadId: 't1', cellId: 'cell1-g1', phase: 'running', refused: new Set<string>() } as unknown as LiveRun;
  const connection = { queryRaw: () => Promise.reject(failure), executeRaw: () => Promise.reject(failure) } as unknown as SqlDriverAdapter;
  const gate = createWorkerQueryGate({ statements: Promise.resolve([statement]), connection: async () => connection, isUnavailable: unavailable, onRefused: () => undefined, messagesFitting: async () => 0, log: createLogger('silent') });
  const msg = { type: 'db_query', runId: 'r1', queryId: 7, kind: 'query', query: { sql: SQL, args: ['u1'], argTypes: [{ scalarType: 'string', dbType: 'TEXT', arity: 'scalar' }] } };
  gate.handle(cell, msg, (id) => (id === 'r1' ? run : undefined));
  for (let i = 0; i < 50 && sent.length === 0; i++) await new Promise((r) => setImmediate(r));
  return sent[0];
}

test('an allowed statement that cannot reach the database answers DB_UNAVAILABLE, retryable', async () => {
  const down = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  expect(await answerTo(down, (err) => err === down)).toEqual({
    type: 'db_answer',
    runId: 'r1',
    queryId: 7,
    ok: false,
    error: { code: 'DB_UNAVAILABLE', message: 'the database cannot be reached right now; retry shortly' },
  });
});

test('an allowed statement that fails for another reason answers DB_QUERY_FAILED with the reason', async () => {
  const broken = new Error('division by zero');
  expect(await answerTo(broken, () => false)).toEqual({
    type: 'db_answer',
    runId: 'r1',
    queryId: 7,
    ok: false,
    error: { code: 'DB_QUERY_FAILED', message: 'database query failed: division by zero' },
  });
});

test("a statement that waited behind its run's earlier one is not run once the run has ended: refused run_not_running", async () => {
  const sent: any[] = [];
  const cell = { id: 'cell1-g1', send: (m: unknown) => sent.push(m) } as unknown as CellHandle;
  const run = { id: 'r1', userId: 'u1', threadId: 't1', cellId: 'cell1-g1', phase: 'running', refused: new Set<string>() } as unknown as LiveRun;
  let release!: () => void;
  let executed = 0;
  const empty = { columnNames: [], columnTypes: [], rows: [] };
  const connection = { queryRaw: () => (++executed === 1 ? new Promise((r) => (release = () => r(empty))) : Promise.resolve(empty)) } as unknown as SqlDriverAdapter;
  const gate = createWorkerQueryGate({ statements: Promise.resolve([statement]), connection: async () => connection, isUnavailable: () => false, onRefused: () => undefined, messagesFitting: async () => 0, log: createLogger('silent') });
  const msg = (queryId: number) => ({ type: 'db_query', runId: 'r1', queryId, kind: 'query', query: { sql: SQL, args: ['u1'], argTypes: [{ scalarType: 'string', dbType: 'TEXT', arity: 'scalar' }] } });
  await new Promise((r) => setImmediate(r));
  gate.handle(cell, msg(1), () => run);
  gate.handle(cell, msg(2), () => run);
  for (let i = 0; i < 50 && !release; i++) await new Promise((r) => setImmediate(r));
  (run as { phase: string }).phase = 'finished';
  release();
  for (let i = 0; i < 50 && sent.length < 2; i++) await new Promise((r) => setImmediate(r));
  expect(executed).toBe(1);
  expect(sent.map((m) => [m.queryId, m.ok, m.error?.message])).toEqual([
    [1, true, undefined],
    [2, false, expect.stringMatching(/run_not_running/)],
  ]);
  expect(run.refused).toEqual(new Set(['db:run_not_running']));
});

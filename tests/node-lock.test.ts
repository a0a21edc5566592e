/**
 * One node per database unless they are a cluster (server/store/node-lock.ts), on this pass's store: a second
 * node without REDIS_URL on the same database refuses to start and says why; a node that died (SIGKILL) does
 * not keep the next one out.
 */
import { runServerOnce, startServer, testDatabaseUrl, type TestServer } from './helpers/server';

let first: TestServer | null = null;

afterAll(async () => {
  await first?.stop();
});

test('a second node on the same database refuses to start, naming REDIS_URL; after the first is SIGKILLed a new one starts', async () => {
  first = await startServer({ CELLS: '1', THREADS_PER_CELL: '1' });
  const second = await runServerOnce({ DATABASE_URL: testDatabaseUrl(first.dir), CELLS: '1', THREADS_PER_CELL: '1' }, 60_000);
  expect(second.code).toBe(1);
  expect(second.stderr).toMatch(/another Atoll node is using .*without REDIS_URL a node runs alone.*set REDIS_URL/s);
  // The first node is untouched by the attempt.
  expect(first.proc.exitCode).toBeNull();

  await first.stop('SIGKILL');
  first = await startServer({ CELLS: '1', THREADS_PER_CELL: '1' }, { dir: first.dir });
  expect(first.logs.some((l) => l.msg === 'listening')).toBe(true);
});

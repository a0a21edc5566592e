/**
 * `npm run cluster:check --quick` in the suite: three nodes, 150 runs of a seeded workload with a node killed
 * and restarted, every invariant checked on the whole history (scripts/cluster-check.ts). Its output, the seed
 * first, is printed when it finds a violation. The checker's own checks are unit-tested on planted violations
 * (tests/unit/cluster-checker.unit.test.ts).
 */
import os from 'node:os';
import path from 'node:path';
import { createdDatabase, type ScratchDatabase } from '../helpers/pg-scratch';
import { runToExit } from '../helpers/run-to-exit';
import { ROOT } from '../helpers/server';

jest.setTimeout(360_000);

let database: ScratchDatabase;

beforeAll(async () => {
  database = await createdDatabase();
});

afterAll(async () => {
  await database?.drop();
});

test('the quick cluster check finds no violation', async () => {
  const out = await runToExit(path.join(ROOT, 'dist/scripts/cluster-check.js'), ['--quick', '--database-url', database.url], {
    cwd: ROOT,
    // TMPDIR: the nodes' scratch roots go in the test run's own folder, removed with it.
    env: { PATH: process.env.PATH ?? '', TMPDIR: os.tmpdir() },
    timeoutMs: 330_000,
  });
  const seed = /seed (\d+)/.exec(out.stderr)?.[1];
  if (out.code !== 0) console.log(`cluster:check --quick (seed ${seed}) exited ${out.code}:\n${out.stdout}\n${out.stderr}`);
  expect(out.stdout).toMatch(/^checked: \d+ runs/m);
  expect({ code: out.code, verdict: out.stdout.match(/^(no violation|VIOLATIONS: \d+).*$/m)?.[0] }).toEqual({ code: 0, verdict: `no violation (seed ${seed})` });
});

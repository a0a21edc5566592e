/**
 * Prisma's query compiler is compiled once per cell and only instantiated by each worker's Prisma client
 * (prisma/query-compiler.ts, workers/worker/db-forwarding.ts). In a plain node process (Prisma's
 * WebAssembly fails inside jest's sandbox): a worker thread builds its Prisma client as a worker does, and the
 * process plays its cell on the run's port.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers/server';
import { QUERY_COMPILER_SOURCE } from '../prisma/query-compiler';

const PROVIDERS = [
  ['sqlite', 'sqlite'],
  ['postgres', 'postgresql'],
] as const;

/**
 * The worker counts `new WebAssembly.Module` (how Prisma compiles its own) and runs one query. `answer`: what the
 * cell answers to `query_compiler`: its module, null (compile your own), or nothing until the run's port goes.
 */
const PROBE = `
const { Worker, MessageChannel } = require('node:worker_threads');
const [provider, answer, root] = process.argv.slice(1);
const worker = \`
const { workerData } = require('node:worker_threads');
let constructed = 0;
WebAssembly.Module = new Proxy(WebAssembly.Module, { construct: (target, args) => (constructed++, Reflect.construct(target, args)) });
const { createDbChannel, createWorkerPrismaClient } = require(workerData.root + '/dist/workers/worker/db-forwarding.js');
const channel = createDbChannel(workerData.given);
const port = workerData.port;
channel.attach(port);
port.on('message', (msg) => {
  if (msg.type === 'db_answer') channel.answer(msg);
  if (msg.type === 'query_compiler') channel.answerQueryCompiler(msg.module);
  if (msg.type === 'release') channel.release();
});
const prisma = createWorkerPrismaClient(workerData.provider, channel);
prisma.thread.findMany({ where: { userId: 'u' } }).then(
  (rows) => port.postMessage({ type: 'result', ok: true, rows: rows.length, constructed }),
  (err) => port.postMessage({ type: 'result', ok: false, error: String(err.message).slice(0, 300), constructed }),
);
\`;
const { compileQueryCompiler } = require(root + '/dist/prisma/query-compiler.js');
const { port1, port2 } = new MessageChannel();
let asked = 0;
(async () => {
const given = answer === 'given' ? await compileQueryCompiler(provider) : null;
const w = new Worker(worker, { eval: true, workerData: { provider, root, port: port2, given }, transferList: [port2] });
port1.on('message', async (msg) => {
  if (msg.type === 'query_compiler') {
    asked++;
    if (answer === 'module') port1.postMessage({ type: 'query_compiler', module: await compileQueryCompiler(provider) });
    else if (answer === 'null') port1.postMessage({ type: 'query_compiler', module: null });
    else if (answer === 'not-a-module') port1.postMessage({ type: 'query_compiler', module: { exports: [] } });
    else port1.postMessage({ type: 'release' });
  } else if (msg.type === 'db_query') {
    port1.postMessage({ type: 'db_answer', id: msg.id, ok: true, result: { columnNames: [], columnTypes: [], rows: [] } });
  } else if (msg.type === 'result') {
    console.log(JSON.stringify({ ...msg, asked }));
    w.terminate();
    port1.close();
  }
});
})();
`;

function probe(provider: string, answer: 'module' | 'given' | 'null' | 'not-a-module' | 'run-ends') {
  const r = spawnSync(process.execPath, ['-e', PROBE, provider, answer, ROOT], { encoding: 'utf8', timeout: 60_000 });
  const last = r.stdout.trim().split('\n').pop();
  if (!last) throw new Error(`probe printed nothing: ${r.stderr}`);
  return JSON.parse(last) as { ok: boolean; rows?: number; error?: string; constructed: number; asked: number };
}

describe.each(PROVIDERS)('%s', (provider, folder) => {
  test("the generated client loads its query compiler from the file the cell compiles", () => {
    const generated = fs.readFileSync(path.join(ROOT, `dist/prisma/generated/${folder}/internal/class.js`), 'utf8');
    expect(generated).toContain(JSON.stringify(QUERY_COMPILER_SOURCE[provider]));
  });

  test("a worker's Prisma client instantiates the cell's query compiler and compiles none", () => {
    expect(probe(provider, 'module')).toEqual({ type: 'result', ok: true, rows: 0, constructed: 0, asked: 1 });
  });

  test('WORKER_DB_WARMUP=eager: the module given at start is used without asking', () => {
    expect(probe(provider, 'given')).toEqual({ type: 'result', ok: true, rows: 0, constructed: 0, asked: 0 });
  });

  // The controls: the same probe compiles its own when the cell has none to give, so `constructed` can tell.
  test.each(['null', 'not-a-module', 'run-ends'] as const)('the cell answers %s: the client compiles its own and the query still runs', (answer) => {
    const r = probe(provider, answer);
    expect(r.constructed).toBe(1);
    expect(r.asked).toBe(1);
    // The run's port went (run-ends): the query is refused, but by the adapter, after the compiler loaded.
    if (answer === 'run-ends') expect(r.error).toMatch(/ctx\.db used after the run ended/);
    else expect(r).toMatchObject({ ok: true, rows: 0 });
  });
});

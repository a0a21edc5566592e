/** Checked facts about the architecture and the docs, so they cannot drift. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers/server';
import { ERROR_CODES } from '../protocol/errors';
import { ENV_VARS } from '../server/config';

/** The module specifiers a compiled file loads: require("x") and import("x"), string literals only. */
function specifiers(src: string): string[] {
  return [...src.matchAll(/\brequire\(\s*["'`]([^"'`]+)["'`]\s*\)|\bimport\(\s*["'`]([^"'`]+)["'`]\s*\)/g)].map((m) => m[1] ?? m[2]);
}

/** Every project file the front's entry can reach through require() or import(), transitively. */
function importGraph(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of specifiers(fs.readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('./') && !spec.startsWith('../')) continue;
      let target = path.resolve(path.dirname(file), spec);
      if (!target.endsWith('.js')) target += '.js';
      if (fs.existsSync(target)) visit(target);
    }
  };
  visit(entry);
  return seen;
}

/**
 * How a compiled file could start workers of its own: loading worker_threads or Piscina (an import that is
 * only a type leaves no require behind), or constructing a Worker whatever it was imported as.
 */
const WORKER_MODULES = new Set(['worker_threads', 'node:worker_threads', 'piscina']);
function workerStarts(src: string): string[] {
  return [
    ...specifiers(src).filter((s) => WORKER_MODULES.has(s)),
    ...[...src.matchAll(/\bnew\s+[\w$.]*\bWorker\s*\(|\bWorker\s*\(\s*[^)]/g)].map((m) => m[0]),
  ];
}

test('the front never executes agent code: its import graph never reaches workers/', () => {
  const graph = [...importGraph(path.join(ROOT, 'dist/server/main.js'))].map((f) => path.relative(path.join(ROOT, 'dist'), f));
  expect(graph.length).toBeGreaterThan(15);
  expect(graph).toContain('server/runs/run-service.js');
  expect(graph.filter((f) => f.startsWith('workers/') || f.startsWith('tests/'))).toEqual([]);
});

/**
 * The one thread the front starts: the SQLite WAL checkpointer's (server/store/sqlite/wal-checkpointer.ts), so
 * that a checkpoint's copy and fsyncs leave the event loop. Its entry may load better-sqlite3 and worker_threads,
 * nothing else: none of the project's files, no agent.
 */
const FRONT_THREADS: Record<string, { entry: string; loads: string[] }> = {
  'server/store/sqlite/wal-checkpointer.js': { entry: 'server/store/sqlite/wal-checkpoint-thread.js', loads: ['node:worker_threads', 'better-sqlite3'] },
};

test('the front starts no threads but its WAL checkpointer\'s: nothing else it loads uses worker_threads or Piscina, or constructs a Worker', () => {
  const graph = [...importGraph(path.join(ROOT, 'dist/server/main.js'))];
  // Cells are child processes (fork); agent workers exist only inside them (workers/cell).
  const starts = graph.map((f) => [path.relative(path.join(ROOT, 'dist'), f), workerStarts(fs.readFileSync(f, 'utf8'))] as const).filter(([, s]) => s.length > 0);
  expect(starts.map(([f]) => f)).toEqual(Object.keys(FRONT_THREADS));
  for (const { entry, loads } of Object.values(FRONT_THREADS)) {
    const src = fs.readFileSync(path.join(ROOT, 'dist', entry), 'utf8');
    expect({ entry, loads: specifiers(src).sort() }).toEqual({ entry, loads: [...loads].sort() });
  }
  // The check can fail: each way a front file could start a worker is caught.
  expect(workerStarts('const worker_threads_1 = require("node:worker_threads");')).toHaveLength(1);
  expect(workerStarts("const { Piscina } = await import('piscina');")).toHaveLength(1);
  expect(workerStarts('new node_worker_threads_1.Worker(path.join(__dirname, "run.js"), { workerData })')).toHaveLength(1);
  expect(workerStarts('const W = loadIt(); new W.Worker(file);')).toHaveLength(1);
  // And it does not cry wolf on what the front really does.
  expect(workerStarts('const child = (0, node_child_process_1.fork)(opts.cellEntry, []); workerId: 1, Workers idle')).toEqual([]);
});

/**
 * Database and bus drivers, each reserved to the folder of its implementation (folders of implementations still
 * to come included): choosing a database or a bus stays one folder. Tests are not checked: they open the
 * database file themselves to see what was written. Nor is the cluster checker (scripts/cluster/), for the same
 * reason: it observes PostgreSQL and Redis from outside the nodes it judges.
 */
const DRIVERS: Record<string, string[]> = {
  'better-sqlite3': ['server/store/sqlite/'],
  '@prisma/adapter-better-sqlite3': ['server/store/sqlite/'],
  pg: ['server/store/postgresql/', 'scripts/cluster/'],
  '@prisma/adapter-pg': ['server/store/postgresql/'],
  ioredis: ['server/bus/redis/', 'server/shared/redis/', 'scripts/cluster/'],
  'rate-limiter-flexible': ['server/shared/redis/'],
};
const SOURCE_DIRS = ['server', 'workers', 'protocol', 'prisma', 'scripts', 'web'];
const SKIPPED_DIRS = new Set(['node_modules', 'dist', 'generated']);

/** The module specifiers a source file names: import/export … from, bare import, import(), require(); types included. */
function sourceSpecifiers(src: string): string[] {
  return [...src.matchAll(/\bfrom\s*["']([^"']+)["']|\bimport\s*["']([^"']+)["']|\b(?:require|import)\(\s*["'`]([^"'`]+)["'`]\s*\)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

/** "file: driver" for every driver a file names outside the folders that driver is reserved to. */
function misplacedDrivers(files: { file: string; src: string }[]): string[] {
  return files.flatMap(({ file, src }) =>
    sourceSpecifiers(src).flatMap((spec) => {
      const driver = Object.keys(DRIVERS).find((d) => spec === d || spec.startsWith(`${d}/`));
      return driver && !DRIVERS[driver].some((folder) => file.startsWith(folder)) ? [`${file}: ${spec}`] : [];
    }),
  );
}

/** The project's own source files (paths relative to the root), tests excepted. */
function sourceFiles(): { file: string; src: string }[] {
  const out: { file: string; src: string }[] = [];
  const visit = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const child = path.posix.join(rel, entry.name);
      if (entry.isDirectory()) {
        if (!SKIPPED_DIRS.has(entry.name)) visit(child);
      } else if (/\.(ts|js|mjs|cjs)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) {
        out.push({ file: child, src: fs.readFileSync(path.join(ROOT, child), 'utf8') });
      }
    }
  };
  for (const dir of SOURCE_DIRS) visit(dir);
  return out;
}

test("nothing outside a backend's folder imports its driver (database and bus drivers)", () => {
  const files = sourceFiles();
  expect(files.length).toBeGreaterThan(100);
  expect(misplacedDrivers(files)).toEqual([]);
  // The scan does see drivers where they belong: SQLite's folder loads both of its own.
  const inSqlite = files.filter((f) => f.file.startsWith('server/store/sqlite/')).flatMap((f) => sourceSpecifiers(f.src));
  expect(inSqlite).toEqual(expect.arrayContaining(['better-sqlite3', '@prisma/adapter-better-sqlite3']));
  // The check can fail: each way of naming a driver outside its folder is caught, types and subpaths included.
  const elsewhere = (src: string, file = 'server/runs/run-service.ts') => misplacedDrivers([{ file, src }]);
  expect(elsewhere("import Database from 'better-sqlite3';")).toHaveLength(1);
  expect(elsewhere("import type { Database } from 'better-sqlite3';")).toHaveLength(1);
  expect(elsewhere('const { Pool } = require("pg");')).toHaveLength(1);
  expect(elsewhere("const Redis = (await import('ioredis')).default;")).toHaveLength(1);
  expect(elsewhere("export { PrismaPg } from '@prisma/adapter-pg';")).toHaveLength(1);
  expect(elsewhere("import 'pg/lib/native';")).toHaveLength(1);
  expect(elsewhere("import { PrismaPg } from '@prisma/adapter-pg';", 'server/store/sqlite/x.ts')).toHaveLength(1);
  // And it does not cry wolf: a driver in its own folder, or a package whose name only starts like one.
  expect(elsewhere("import { Pool } from 'pg';", 'server/store/postgresql/pool.ts')).toEqual([]);
  expect(elsewhere("import Redis from 'ioredis';", 'server/shared/redis/tickets.ts')).toEqual([]);
  expect(elsewhere("import format from 'pg-format';")).toEqual([]);
});

/**
 * What protocol/ may import besides its own files: it is loaded by every process (front, cells, workers) and
 * bundled for the browser, so it names nothing of server/, workers/ or web/, and no package that needs Node
 * but these two. (ipc-batch.ts and requests.ts also use Node's globals setImmediate and Buffer, imported from
 * nowhere; neither is in the browser bundle.)
 */
const PROTOCOL_PACKAGES: Record<string, string> = {
  zod: 'requests.ts: the schemas requests are validated with at the edge',
  'node:worker_threads': "worker-messages.ts, a type only: the MessagePort of a worker's task",
};

/** "file: specifier" for every import of a protocol/ file that leaves protocol/ or names a package not allowed there. */
function protocolEscapes(files: { file: string; src: string }[]): string[] {
  return files.flatMap(({ file, src }) =>
    sourceSpecifiers(src).flatMap((spec) => {
      const inside = spec.startsWith('.') ? path.posix.join(path.posix.dirname(file), spec).startsWith('protocol/') : spec in PROTOCOL_PACKAGES;
      return inside ? [] : [`${file}: ${spec}`];
    }),
  );
}

test('protocol/ imports nothing of server/, workers/ or web/, and no package but zod and a type of node:worker_threads', () => {
  const files = sourceFiles().filter((f) => f.file.startsWith('protocol/') && f.file.endsWith('.ts'));
  expect(files.length).toBeGreaterThan(10);
  expect(protocolEscapes(files)).toEqual([]);
  // The allowed packages are really used (a stale entry would let one back in unnoticed).
  expect(new Set(files.flatMap((f) => sourceSpecifiers(f.src)).filter((s) => !s.startsWith('.')))).toEqual(new Set(Object.keys(PROTOCOL_PACKAGES)));
  // The check can fail: types, re-exports and import() types that leave protocol/ are caught, and Node-only packages.
  const escapes = (src: string, file = 'protocol/cell-messages.ts') => protocolEscapes([{ file, src }]);
  expect(escapes("import type { Config } from '../server/config.js';")).toHaveLength(1);
  expect(escapes("export type { WorkerRuntime } from '../workers/worker/worker-runtime.js';")).toHaveLength(1);
  expect(escapes("type Api = typeof import('../web/src/shared/api');")).toHaveLength(1);
  expect(escapes("import fs from 'node:fs';")).toHaveLength(1);
  expect(escapes("import { Server } from 'socket.io';")).toHaveLength(1);
  expect(escapes("import type { Logger } from './../server/logger.js';")).toHaveLength(1);
  // And it does not cry wolf on protocol's own files, nested folders included.
  expect(escapes("import type { ErrorBody } from './errors.js';")).toEqual([]);
  expect(escapes("import type { ErrorBody } from '../errors.js';", 'protocol/socket/x.ts')).toEqual([]);
  expect(escapes("import { z } from 'zod';")).toEqual([]);
});

test('the worker-thread entry refuses to run on a main thread', () => {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(ROOT, 'dist/workers/worker/run-entry.js'))})`], { encoding: 'utf8' });
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(/must run inside a worker thread/);
});

test('README documents every error code and every environment variable', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const code of Object.keys(ERROR_CODES)) expect([code, readme.includes(`\`${code}\``)]).toEqual([code, true]);
  for (const name of ENV_VARS) expect([name, readme.includes(`\`${name}\``)]).toEqual([name, true]);
});

// Clients branch on an error's code and its HTTP status (README, "Error codes": "Branch on `code`"). The test above
// finds each code anywhere in README; this one reads the table's row for it, so a status there that is not the one
// the front answers with (ERROR_CODES[code].http) fails. A row marked "–" is a run's outcome, never an HTTP answer.
test("README's Error codes table has one row per code, with the HTTP status the front answers", () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Error codes'), readme.indexOf('### HTTP API'));
  const rows = new Map([...section.matchAll(/^\| `([A-Z_]+)` \| ([^|]+) \|/gm)].map((m) => [m[1], m[2].trim()]));
  expect([...rows.keys()].sort()).toEqual(Object.keys(ERROR_CODES).sort());
  for (const [code, http] of rows) {
    if (http === '–') continue;
    expect([code, http]).toEqual([code, String(ERROR_CODES[code as keyof typeof ERROR_CODES].http)]);
  }
  // The codes an HTTP client can get at all carry a status in the table.
  for (const code of ['BAD_REQUEST', 'UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'THREAD_BUSY', 'RATE_LIMITED', 'OVERLOADED', 'DB_UNAVAILABLE', 'REDIS_UNAVAILABLE', 'SHUTTING_DOWN', 'INTERNAL']) {
    expect([code, rows.get(code)]).not.toEqual([code, '–']);
  }
});

test('README gives the two commands, and .ci/run calls the README\'s test command', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  expect(readme).toContain('npm install && npm start');
  expect(readme).toContain('npm test');
  expect(fs.readFileSync(path.join(ROOT, '.ci/run'), 'utf8')).toMatch(/^npm test$/m);
});

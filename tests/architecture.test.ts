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
 * How a compiled file could start threads of its own: loading worker_threads or Piscina (an import that is
 * only a type leaves no require behind), or constructing a Worker whatever it was imported as.
 */
const THREAD_MODULES = new Set(['worker_threads', 'node:worker_threads', 'piscina']);
function threadStarts(src: string): string[] {
  return [
    ...specifiers(src).filter((s) => THREAD_MODULES.has(s)),
    ...[...src.matchAll(/\bnew\s+[\w$.]*\bWorker\s*\(|\bWorker\s*\(\s*[^)]/g)].map((m) => m[0]),
  ];
}

test('the front never executes agent code: its import graph never reaches workers/', () => {
  const graph = [...importGraph(path.join(ROOT, 'dist/server/main.js'))].map((f) => path.relative(path.join(ROOT, 'dist'), f));
  expect(graph.length).toBeGreaterThan(15);
  expect(graph).toContain('server/runs/run-service.js');
  expect(graph.filter((f) => f.startsWith('workers/') || f.startsWith('tests/'))).toEqual([]);
});

test('the front starts no threads: nothing it loads uses worker_threads or Piscina, or constructs a Worker', () => {
  const graph = [...importGraph(path.join(ROOT, 'dist/server/main.js'))];
  // Cells are child processes (fork); agent threads exist only inside them (workers/cell). No front file is allowed.
  const starts = graph.map((f) => [path.relative(path.join(ROOT, 'dist'), f), threadStarts(fs.readFileSync(f, 'utf8'))] as const).filter(([, s]) => s.length > 0);
  expect(starts).toEqual([]);
  // The check can fail: each way a front file could start a thread is caught.
  expect(threadStarts('const worker_threads_1 = require("node:worker_threads");')).toHaveLength(1);
  expect(threadStarts("const { Piscina } = await import('piscina');")).toHaveLength(1);
  expect(threadStarts('new node_worker_threads_1.Worker(path.join(__dirname, "run.js"), { workerData })')).toHaveLength(1);
  expect(threadStarts('const W = loadIt(); new W.Worker(file);')).toHaveLength(1);
  // And it does not cry wolf on what the front really does.
  expect(threadStarts('const child = (0, node_child_process_1.fork)(opts.cellEntry, []); workerId: 1, Workers idle')).toEqual([]);
});

test('the worker-thread entry refuses to run on a main thread', () => {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(ROOT, 'dist/workers/thread/run-entry.js'))})`], { encoding: 'utf8' });
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(/must run inside a worker thread/);
});

test('README documents every error code and every environment variable', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const code of Object.keys(ERROR_CODES)) expect([code, readme.includes(`\`${code}\``)]).toEqual([code, true]);
  for (const name of ENV_VARS) expect([name, readme.includes(`\`${name}\``)]).toEqual([name, true]);
});

test('README gives the two commands, and .ci/run calls the README\'s test command', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  expect(readme).toContain('npm install && npm start');
  expect(readme).toContain('npm test');
  expect(fs.readFileSync(path.join(ROOT, '.ci/run'), 'utf8')).toMatch(/^npm test$/m);
});

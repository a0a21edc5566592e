/** Checked facts about the architecture and the docs, so they cannot drift. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers/server';
import { ERROR_CODES } from '../server/protocol/errors';
import { ENV_VARS } from '../server/config';

/** Every project file the front's entry can reach through require(), transitively. */
function importGraph(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = fs.readFileSync(file, 'utf8');
    for (const m of src.matchAll(/require\("(\.{1,2}\/[^"]+)"\)|import\("(\.{1,2}\/[^"]+)"\)/g)) {
      let target = path.resolve(path.dirname(file), m[1] ?? m[2]);
      if (!target.endsWith('.js')) target += '.js';
      if (fs.existsSync(target)) visit(target);
    }
  };
  visit(entry);
  return seen;
}

test('the front never executes agent code: its import graph never reaches workers/', () => {
  const graph = [...importGraph(path.join(ROOT, 'dist/server/main.js'))].map((f) => path.relative(path.join(ROOT, 'dist'), f));
  expect(graph.length).toBeGreaterThan(15);
  expect(graph).toContain('server/runs/run-service.js');
  expect(graph.filter((f) => f.startsWith('workers/') || f.startsWith('tests/'))).toEqual([]);
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

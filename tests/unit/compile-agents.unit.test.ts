/** The front's TypeScript agent compiler and its cache: reuse while inputs are unchanged, refuse a cache others can write. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compileAgents } from '../../server/agents/compile-agents';
import type { Logger } from '../../server/logger';

const ROOT = path.resolve(__dirname, '../../..');
const CONTRACT = path.join(ROOT, 'dist/workers/agent-contract.js');

function recordingLog() {
  const lines: Record<string, unknown>[] = [];
  const log = { info: (fields: Record<string, unknown>, msg: string) => lines.push({ ...fields, msg }) } as unknown as Logger;
  return { log, lines };
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-compile-'));
  fs.mkdirSync(path.join(dir, 'agents', 'lib'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'agents', 'lib', 'op.ts'), 'export const op = (a: number, b: number): number => a + b;\n');
  fs.writeFileSync(
    path.join(dir, 'agents', 'calc.ts'),
    "import type { Agent } from 'atoll/agent';\nimport { op } from './lib/op.js';\nexport default class Calc implements Agent { execute(): string { return String(op(6, 3)); } }\n",
  );
  fs.writeFileSync(path.join(dir, 'agents', 'types.d.ts'), 'declare const x: number;\n');
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

test('compiled once, reused while every bundled file is unchanged, compiled again when an imported file changes', async () => {
  const opts = { agentsDir: path.join(dir, 'agents'), cacheDir: path.join(dir, 'cache'), contractModule: CONTRACT };
  const first = recordingLog();
  const compiled = await compileAgents({ ...opts, log: first.log });
  // .d.ts files are not agents.
  expect(compiled).toEqual([{ source: path.join(dir, 'agents', 'calc.ts'), module: expect.stringMatching(/[0-9a-f]{64}\.mjs$/) }]);
  expect(first.lines.map((l) => l.cache)).toEqual(['miss']);
  // The imported file is bundled in; the type-only import of the contract is gone.
  const code = fs.readFileSync(compiled[0]!.module, 'utf8');
  expect(code).toContain('a + b');
  expect(code).not.toMatch(/import|atoll\/agent/);

  const second = recordingLog();
  expect(await compileAgents({ ...opts, log: second.log })).toEqual(compiled);
  expect(second.lines.map((l) => l.cache)).toEqual(['hit']);

  fs.writeFileSync(path.join(dir, 'agents', 'lib', 'op.ts'), 'export const op = (a: number, b: number): number => a * b;\n');
  const third = recordingLog();
  const recompiled = await compileAgents({ ...opts, log: third.log });
  expect(third.lines.map((l) => l.cache)).toEqual(['miss']);
  expect(fs.readFileSync(recompiled[0]!.module, 'utf8')).toContain('a * b');
});

test('a cache folder others can write is refused', async () => {
  const cacheDir = path.join(dir, 'cache');
  fs.mkdirSync(cacheDir);
  fs.chmodSync(cacheDir, 0o777);
  await expect(compileAgents({ agentsDir: path.join(dir, 'agents'), cacheDir, contractModule: CONTRACT, log: recordingLog().log })).rejects.toThrow(/AGENT_CACHE_DIR .* writable by no one else \(mode 777/);
});

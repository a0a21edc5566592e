/**
 * `npm start` on a built tree, as a user runs it: it builds nothing (scripts/build.js finds every step's inputs
 * unchanged, and no output file is touched), then prints the address to open and a dev-login command that
 * really gives a token. Not a timing test: README "The two commands" gives the times measured.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/server';

/** Output files of each build step: their modification times must not move. */
const OUTPUTS = ['dist/server/main.js', 'dist/.tsbuildinfo', 'web/dist/index.html', 'web/dist/assets/chat.js', 'prisma/generated/sqlite/client.ts'];
const mtimes = () => Object.fromEntries(OUTPUTS.map((f) => [f, fs.statSync(path.join(ROOT, f)).mtimeMs]));

let proc: ChildProcess | null = null;

afterAll(async () => {
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise((resolve) => proc!.once('exit', resolve));
    process.kill(-proc.pid!, 'SIGTERM');
    await exited;
  }
});

test('on a built tree, npm start builds nothing, then prints the URL and a dev-login command that gives a token', async () => {
  // The tree must be built (npm test builds first); rebuilding under the other tests' feet is not this test's job.
  const check = spawnSync(process.execPath, ['scripts/build.js', '--check'], { cwd: ROOT, encoding: 'utf8' });
  expect({ status: check.status, stderr: check.stderr }).toEqual({ status: 0, stderr: 'build: up to date\n' });
  const before = mtimes();

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-start-'));
  // TMPDIR: the test run's folder, where the server's cells' scratch root (kept after a stop) is removed with it.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: os.tmpdir(), PORT: '0', DATABASE_URL: `file:${dir}/atoll.db`, CELLS: '1', THREADS_PER_CELL: '1' };
  // Its own process group: npm, and the server it starts, are stopped together.
  proc = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  const banner = await new Promise<string>((resolve, reject) => {
    proc!.stderr!.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
      // The banner's last line.
      if (/\n {2}Then: .*\n/.test(stderr)) resolve(stderr);
    });
    proc!.stdout!.resume();
    proc!.once('exit', (code) => reject(new Error(`npm start exited with ${code} before its banner:\n${stderr}`)));
  });

  expect(banner).toContain('build: up to date (Prisma clients, server (tsc), web pages)');
  expect(banner).not.toContain('build: built');
  expect(mtimes()).toEqual(before);

  const url = /Atoll is listening\. Open (http:\/\/127\.0\.0\.1:\d+)\//.exec(banner)?.[1];
  expect(url).toBeDefined();
  const page = await fetch(`${url}/`);
  expect(page.status).toBe(200);

  // The dev-login line, as printed, run by a shell (curl and jq): it sets a token the API accepts.
  const line = /^ +(TOKEN=\$\(curl .*)$/m.exec(banner)?.[1];
  expect(line).toContain(`${url}/v1/auth/dev-login`);
  const token = spawnSync('sh', ['-c', `${line} && printf %s "$TOKEN"`], { encoding: 'utf8' }).stdout;
  expect(token).toMatch(/^ey/);
  const threads = await fetch(`${url}/v1/threads`, { headers: { authorization: `Bearer ${token}` } });
  expect(threads.status).toBe(200);

  const exited = new Promise<number | null>((resolve) => proc!.once('exit', resolve));
  process.kill(-proc.pid!, 'SIGTERM');
  await exited;
  fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

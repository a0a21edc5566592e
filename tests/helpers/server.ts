/**
 * Starts a real Atoll front (node dist/server/main.js) on an ephemeral port with its own database (a SQLite
 * file in its folder, or a PostgreSQL database of its own with ATOLL_TEST_DATABASE=postgresql: testDatabaseUrl),
 * exactly as a user would, and captures its JSON log lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testDatabaseUrl } from './test-database';

export { testDatabaseUrl };

/** A folder of agents for one test file (file name to source), under the test run's temporary folder. */
export function agentsDirWith(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-agents-'));
  // Readable by cells with OS users of their own (mkdtemp makes it 0700), as an operator's AGENTS_DIR must be.
  fs.chmodSync(dir, 0o755);
  for (const [name, source] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), source);
  return dir;
}
export const ROOT = path.resolve(__dirname, '../../..');

/**
 * A test's AGENTS_DIR (mkdtemp makes it 0700) made readable by other users, as an operator's must be for cells with
 * OS users of their own (the front as root); without it the server would warn and run its cells as its own user,
 * which startServer refuses.
 */
function agentsDirReadable(env: Record<string, string>): void {
  if (!env.AGENTS_DIR) return;
  try {
    fs.chmodSync(env.AGENTS_DIR, fs.statSync(env.AGENTS_DIR).mode | 0o005);
  } catch {
    // not there: the server says so
  }
}
export const FIXTURE_AGENTS = path.join(ROOT, 'tests/fixtures/agents');

export interface TestServer {
  url: string;
  port: number;
  dir: string;
  proc: ChildProcess;
  logs: Record<string, unknown>[];
  /** Everything the process wrote to stdout, JSON log lines or not. */
  stdout: () => string;
  stderr: () => string;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * `wrap`: a command the server runs under, e.g. `['setpriv', '--bounding-set=-sys_nice', '--inh-caps=-sys_nice']`
 * to take a capability away from it.
 */
export async function startServer(env: Record<string, string> = {}, options: { dir?: string; wrap?: string[] } = {}): Promise<TestServer> {
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-test-'));
  agentsDirReadable(env);
  const [command, ...prefix] = [...(options.wrap ?? []), process.execPath];
  const proc = spawn(command, [...prefix, path.join(ROOT, 'dist/server/main.js')], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      // The jest run's own folder (global-setup): the server's scratch roots go there, and are removed with it
      // even when a test kills the server.
      TMPDIR: os.tmpdir(),
      PORT: '0',
      DATABASE_URL: testDatabaseUrl(dir),
      AUTH_JWT_SECRET: 'test-secret-test-secret-test-secret',
      AUTH_DEV_LOGIN: '1',
      CELLS: '2',
      THREADS_PER_CELL: '2',
      LOG_LEVEL: 'info',
      // Tests drive many runs per user from one address; the admission and rate-limit tests set these
      // back to their defaults (or lower) themselves.
      USER_MAX_CONCURRENT_RUNS: '100',
      RATE_LIMIT_USER_PER_SEC: '10000',
      RATE_LIMIT_USER_BURST: '10000',
      RATE_LIMIT_IP_PER_SEC: '10000',
      RATE_LIMIT_IP_BURST: '10000',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  let stdout = '';
  let buffered = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const port = await new Promise<number>((resolve, reject) => {
    // A start that never comes is killed (its cells follow it: they exit when its IPC channel closes), so a
    // starved machine's slow start cannot leave a server behind that keeps jest from exiting.
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not start in 60 s:\n${stderr}`));
    }, 60_000);
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (typeof entry.msg === 'string' && entry.msg.startsWith('cells cannot run as OS users of their own')) {
            // A test of the walls as root would test the weaker ones without saying so (it did, until 2026-12-06).
            clearTimeout(timer);
            proc.kill('SIGKILL');
            reject(new Error(`the test server's cells would run as its own OS user: ${entry.msg}`));
          }
          if (entry.msg === 'listening') {
            clearTimeout(timer);
            resolve(entry.port as number);
          }
        } catch {
          // not a log line
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${stderr}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    proc,
    logs,
    stdout: () => stdout,
    stderr: () => stderr,
    stop(signal = 'SIGTERM') {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill(signal);
      });
    },
  };
}

/** Runs the server entry with an environment and returns how it ended (for configuration errors). */
export function runServerOnce(env: Record<string, string>, timeoutMs = 15_000): Promise<{ code: number | null; stderr: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-test-'));
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [path.join(ROOT, 'dist/server/main.js')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', TMPDIR: os.tmpdir(), PORT: '0', DATABASE_URL: testDatabaseUrl(dir), ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/**
 * Starts a server process (Atoll's front or a bench baseline) on an ephemeral port with its own scratch
 * directory, waits for its `listening` log line, and keeps the few log lines the bench needs (cell pids, and
 * the lines a caller listens to with onLog).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

export interface LogLine {
  msg?: string;
  cell?: string;
  pid?: number;
  port?: number;
  /** A cell death's cause (`cell died`). */
  cause?: string;
  run_id?: string;
  /** performance.now() in the bench process when the line arrived */
  receivedAt: number;
}

export interface Spawned {
  url: string;
  pid: number;
  dir: string;
  /** `cell ready` and `cell died` lines, in arrival order. */
  cellLog: LogLine[];
  /** performance.now() when its `listening` line arrived. */
  startedAt: number;
  /** Resolves with the first matching line that arrives from now on (or null after timeoutMs). */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine | null>;
  /** The live cells' pids by slot (cell1, cell2, ...), from the latest `cell ready` of each. */
  cellPids(): Map<string, number>;
  /** Calls `listener` with every line whose msg is `msg` from now on, until the returned function is called. */
  onLog(msg: string, listener: (l: LogLine) => void): () => void;
  /** SIGKILL of the server and its cells at once, as when its machine dies; stop() then only cleans up. */
  kill(): void;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

export async function startServer(
  entry: string,
  env: Record<string, string>,
  args: string[] = [],
  { startTimeoutMs = START_TIMEOUT_MS, nodeArgs = [] as string[] } = {},
): Promise<Spawned> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-bench-'));
  // The server's cells' scratch root goes in here (TMPDIR), removed with it: a front keeps its root after a stop.
  // Passable, not listable: cells with OS users of their own reach their folders through it.
  fs.chmodSync(dir, 0o711);
  const proc: ChildProcess = spawn(process.execPath, [...nodeArgs, entry, ...args], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: `file:${path.join(dir, 'atoll.db')}`,
      AUTH_JWT_SECRET: 'bench-secret-bench-secret-bench-secret',
      AUTH_DEV_LOGIN: '1',
      LOG_LEVEL: 'info',
      TMPDIR: dir,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const cellLog: LogLine[] = [];
  const watchers = new Set<(l: LogLine) => void>();
  /** Lines parsed on request only (onLog): one log line per run would otherwise cost the client. */
  const listened = new Map<string, Set<(l: LogLine) => void>>();
  let stderr = '';
  let buffered = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4000)));
  const started = new Promise<LogLine>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${path.basename(entry)} did not start in ${startTimeoutMs} ms:\n${stderr}`)), startTimeoutMs);
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        // Only the few lines the bench reads are parsed: one log line per run would otherwise cost the client.
        const listenedTo = listened.size > 0 && [...listened.keys()].some((m) => line.includes(`"msg":"${m}"`));
        if (!line.includes('"listening"') && !line.includes('"cell ') && !listenedTo) continue;
        let entry: LogLine;
        try {
          entry = { ...(JSON.parse(line) as object), receivedAt: performance.now() };
        } catch {
          continue;
        }
        if (entry.msg === 'listening') {
          clearTimeout(timer);
          resolve(entry);
        }
        if (entry.msg === 'cell ready' || entry.msg === 'cell died') {
          cellLog.push(entry);
          watchers.forEach((w) => w(entry));
        }
        if (entry.msg !== undefined) listened.get(entry.msg)?.forEach((l) => l(entry));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${path.basename(entry)} exited with ${code} before listening:\n${stderr}`));
    });
  });

  let listening: LogLine;
  try {
    listening = await started;
  } catch (err) {
    // A start that timed out leaves a live server (and its cells) behind unless it is killed here.
    for (const l of cellLog) if (l.msg === 'cell ready' && l.pid) killQuietly(l.pid);
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGKILL');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const cellPids = () => {
    const pids = new Map<string, number>();
    for (const l of cellLog) if (l.msg === 'cell ready' && l.cell && l.pid) pids.set(l.cell.replace(/-g\d+$/, ''), l.pid);
    return pids;
  };

  return {
    url: `http://127.0.0.1:${listening.port!}`,
    pid: proc.pid!,
    dir,
    cellLog,
    startedAt: listening.receivedAt,
    waitForLog(match, timeoutMs) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          watchers.delete(watch);
          resolve(null);
        }, timeoutMs);
        const watch = (l: LogLine) => {
          if (!match(l)) return;
          clearTimeout(timer);
          watchers.delete(watch);
          resolve(l);
        };
        watchers.add(watch);
      });
    },
    cellPids,
    onLog(msg, listener) {
      const set = listened.get(msg) ?? new Set();
      set.add(listener);
      listened.set(msg, set);
      return () => {
        set.delete(listener);
        if (set.size === 0 && listened.get(msg) === set) listened.delete(msg);
      };
    },
    kill() {
      for (const pid of [proc.pid!, ...cellPids().values()]) killQuietly(pid);
    },
    stop() {
      return new Promise<void>((resolve) => {
        const done = () => {
          fs.rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (proc.exitCode !== null || proc.signalCode !== null) return done();
        const kill = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
        proc.once('exit', () => {
          clearTimeout(kill);
          done();
        });
        proc.kill('SIGTERM');
      });
    },
  };
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

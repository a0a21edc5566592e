/**
 * Redis for a cluster under test: a fresh key prefix on a shared server (its keys removed at the end with
 * SCAN + DEL), or a private redis-server of this process's own on a free port, which may be restarted at will
 * without disturbing anybody else using the machine's Redis (the checker's --redis-restart).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { freePort } from './nodes.js';

export const SHARED_REDIS_URL = 'redis://127.0.0.1:6379';

/** A key prefix nobody else uses: `atoll_t_<random>:`. */
export function freshKeyPrefix(): string {
  return `atoll_t_${randomBytes(6).toString('hex')}:`;
}

/** Deletes every key that starts with `prefix` (SCAN, never KEYS: the server stays responsive); returns how many. */
export async function removeKeys(url: string, prefix: string): Promise<number> {
  if (!/^[A-Za-z0-9:._-]+:$/.test(prefix) || prefix.length < 4) throw new Error(`refusing to delete keys by the prefix ${JSON.stringify(prefix)}`);
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  await redis.connect();
  let removed = 0;
  try {
    // The prefix has no glob characters (checked above), so the pattern matches exactly the keys that start with it.
    const stream = redis.scanStream({ match: `${prefix}*`, count: 500 });
    for await (const keys of stream as AsyncIterable<string[]>) {
      if (keys.length > 0) removed += await redis.del(...keys);
    }
  } finally {
    redis.disconnect();
  }
  return removed;
}

/** The keys under `prefix` (for tests that look at what a cluster left). */
export async function keysUnder(url: string, prefix: string): Promise<string[]> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  await redis.connect();
  try {
    const found: string[] = [];
    for await (const keys of redis.scanStream({ match: `${prefix}*`, count: 500 }) as AsyncIterable<string[]>) found.push(...keys);
    return found;
  } finally {
    redis.disconnect();
  }
}

export interface PrivateRedis {
  url: string;
  port: number;
  /** Stops it (keeping nothing: it saves nothing) and starts it again on the same port; resolves once it answers. */
  restart(downMs?: number): Promise<void>;
  /** Stops it, to be started again with up(). */
  down(): Promise<void>;
  /** Starts it again on the same port (after down()); resolves once it answers. */
  up(): Promise<void>;
  stop(): Promise<void>;
}

function startRedisServer(port: number): ChildProcess {
  return spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

async function untilAnswering(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      if ((await redis.ping()) === 'PONG') return;
    } catch {
      // not up yet
    } finally {
      redis.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis-server at ${url} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A redis-server process of this process's own (Debian's redis-server on PATH), saving nothing. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let proc = startRedisServer(port);
  const stopProc = (p: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  const reap = () => proc.kill('SIGKILL');
  process.on('exit', reap);
  await untilAnswering(url, 10_000);
  return {
    url,
    port,
    async restart(downMs = 0) {
      await stopProc(proc);
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      proc = startRedisServer(port);
      await untilAnswering(url, 10_000);
    },
    down: () => stopProc(proc),
    async up() {
      proc = startRedisServer(port);
      await untilAnswering(url, 10_000);
    },
    async stop() {
      await stopProc(proc);
      process.off('exit', reap);
    },
  };
}

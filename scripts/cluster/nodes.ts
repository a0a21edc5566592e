/**
 * A cluster of real Atoll nodes on one machine: each node is `node dist/server/main.js` as a child process in
 * a process group of its own (its cells are in it too), with the same DATABASE_URL, REDIS_URL and
 * AUTH_JWT_SECRET, and its own NODE_ID and port. A slot keeps its port across restarts, as a machine behind a
 * load balancer keeps its address. Faults act on the whole group: SIGKILL takes the node and its cells down
 * at once (a machine dying), SIGSTOP freezes them all (a VM paused past its lease); SIGTERM goes to the front
 * alone, which drains and stops its cells itself.
 * Used by `npm run cluster:check` and, through tests/helpers/cluster.ts, by the contract tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The repository's root, from dist/scripts/cluster/. */
export const ROOT = path.resolve(__dirname, '../../..');
export const ATOLL_ENTRY = path.join(ROOT, 'dist/server/main.js');

/** One JSON log line of a node (pino), with the moment it arrived. */
export type LogLine = Record<string, unknown> & { msg?: string; receivedAt: number };

export type NodeState = 'starting' | 'up' | 'paused' | 'exited';

export interface NodeExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One process lifetime of a slot. A restart makes a new one. */
export interface AtollNode {
  readonly slot: number;
  readonly nodeId: string;
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  readonly proc: ChildProcess;
  state: NodeState;
  /** Every JSON log line so far (the node's and its cells'). */
  readonly logs: LogLine[];
  stderr(): string;
  /** Everything on stdout that was not a JSON line. */
  otherStdout(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<NodeExit>;
  /** The first log line from now on (or already logged, with `includePast`) that matches; null after timeoutMs or at exit. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs: number, includePast?: boolean): Promise<LogLine | null>;
}

export interface ClusterOptions {
  /** Nodes started at once (slots 1..size). */
  size: number;
  databaseUrl: string;
  /** null: no REDIS_URL (single-node mode; a second node must then refuse to start). */
  redis: { url: string; keyPrefix: string } | null;
  jwtSecret: string;
  /** NODE_LEASE_MS. */
  leaseMs: number;
  /** Extra environment for every node (overrides the defaults below). */
  env?: Record<string, string>;
  /** NODE_ID of slot n (default `n<slot>`). */
  nodeId?: (slot: number) => string;
  /** Where to copy each node's output (`<nodeId>.<pid>.log`); none by default. */
  logDir?: string;
  /** How long a node may take to log `listening`. */
  startTimeoutMs?: number;
}

export interface Cluster {
  readonly options: Readonly<ClusterOptions>;
  /** The slots, 1..n. */
  readonly slots: number[];
  /** The current (latest) process of a slot. */
  node(slot: number): AtollNode;
  url(slot: number): string;
  /** Every process started so far, in start order (restarts included). */
  readonly history: AtollNode[];
  /** Starts a slot that is not running (a new slot number adds a node); `nodeId` overrides its NODE_ID. */
  start(slot: number, overrides?: { nodeId?: string; env?: Record<string, string> }): Promise<AtollNode>;
  /** SIGKILL to the node's process group (front and cells); resolves once the front has exited. */
  kill(slot: number): Promise<NodeExit>;
  /** SIGTERM to the front (it drains); resolves with its exit; SIGKILL after `timeoutMs`. */
  term(slot: number, timeoutMs?: number): Promise<NodeExit>;
  /** SIGSTOP to the whole group. */
  pause(slot: number): void;
  /** SIGCONT to the whole group. */
  resume(slot: number): void;
  /** Kill (or term) then start again, with the same NODE_ID unless `nodeId` is given. */
  restart(slot: number, how?: { signal?: 'SIGKILL' | 'SIGTERM'; nodeId?: string }): Promise<AtollNode>;
  /** SIGKILLs every running node (paused ones too) and waits for them. */
  close(): Promise<void>;
}

const DEFAULT_START_TIMEOUT_MS = 60_000;

/** What every node gets unless the caller says otherwise: small enough for three nodes on two cores. */
export const NODE_DEFAULTS: Readonly<Record<string, string>> = Object.freeze({
  HOST: '127.0.0.1',
  LOG_LEVEL: 'info',
  CELLS: '1',
  THREADS_PER_CELL: '2',
  WARM_SPARE_THREADS: '1',
  // Workers serve any user: the checker is about the cluster, not about the wall between users, and a worker
  // per user switch would spend the two cores on worker start-ups.
  THREAD_REUSE: 'any',
  SHUTDOWN_GRACE_MS: '5000',
  RATE_LIMIT_USER_PER_SEC: '100000',
  RATE_LIMIT_USER_BURST: '100000',
  RATE_LIMIT_IP_PER_SEC: '100000',
  RATE_LIMIT_IP_BURST: '100000',
  MAX_CONNECTIONS_PER_IP: '10000',
  MAX_CONNECTIONS_PER_USER: '1000',
});

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released for the node to take). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

function launch(slot: number, nodeId: string, port: number, env: Record<string, string>, opts: ClusterOptions): AtollNode {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), `atoll-node-${nodeId}-`));
  // detached: a process group of its own, so a signal reaches the node's cells with it.
  const proc: ChildProcess = spawn(process.execPath, [ATOLL_ENTRY], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`node ${nodeId} could not be spawned`);
  const logs: LogLine[] = [];
  /** Each waitForLog in progress; called with null when the process exits (nothing more will come). */
  const watchers = new Set<(l: LogLine | null) => void>();
  const file = opts.logDir ? fs.createWriteStream(path.join(opts.logDir, `${nodeId}.${pid}.log`)) : null;
  let stderr = '';
  let other = '';
  let buffered = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
    file?.write(c);
  });
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    file?.write(chunk);
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let entry: LogLine;
      try {
        entry = { ...(JSON.parse(line) as object), receivedAt: Date.now() };
      } catch {
        other += line + '\n';
        continue;
      }
      logs.push(entry);
      for (const w of watchers) w(entry);
    }
  });
  const exited = new Promise<NodeExit>((resolve) =>
    proc.once('exit', (code, signal) => {
      node.state = 'exited';
      for (const w of [...watchers]) w(null);
      file?.end();
      fs.rm(cwd, { recursive: true, force: true }, () => undefined);
      resolve({ code, signal });
    }),
  );
  const node: AtollNode = {
    slot,
    nodeId,
    port,
    url: `http://127.0.0.1:${port}`,
    pid,
    proc,
    state: 'starting',
    logs,
    stderr: () => stderr,
    otherStdout: () => other,
    exited,
    waitForLog(match, timeoutMs, includePast = false) {
      if (includePast) {
        const past = logs.find(match);
        if (past) return Promise.resolve(past);
      }
      if (node.state === 'exited') return Promise.resolve(null);
      return new Promise((resolve) => {
        const watch = (l: LogLine | null) => {
          if (l !== null && !match(l)) return;
          clearTimeout(timer);
          watchers.delete(watch);
          resolve(l);
        };
        const timer = setTimeout(() => {
          watchers.delete(watch);
          resolve(null);
        }, timeoutMs);
        watchers.add(watch);
      });
    },
  };
  return node;
}

/** Waits for the node's `listening` line (naming the port it was given); throws with its stderr if it exits first. */
async function untilListening(node: AtollNode, timeoutMs: number): Promise<void> {
  const listening = await node.waitForLog((l) => l.msg === 'listening', timeoutMs, true);
  if (!listening && node.state === 'exited') {
    const exit = await node.exited;
    // 'exit' may come before the last of stderr: let the pipe drain (bounded: its cells may still hold it).
    const stderr = node.proc.stderr;
    if (stderr && !stderr.closed) await Promise.race([new Promise((r) => stderr.once('close', r)), new Promise((r) => setTimeout(r, 2000))]);
    throw new Error(`node ${node.nodeId} exited (${exit.code ?? exit.signal}) before listening:\n${node.stderr()}`);
  }
  if (!listening) {
    signalGroup(node.pid, 'SIGKILL');
    throw new Error(`node ${node.nodeId} did not log "listening" within ${timeoutMs} ms:\n${node.stderr()}`);
  }
  if (listening.port !== node.port) throw new Error(`node ${node.nodeId} listens on ${String(listening.port)}, not on its port ${node.port}`);
  node.state = 'up';
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const opts = Object.freeze({ ...options });
  if (opts.logDir) fs.mkdirSync(opts.logDir, { recursive: true });
  const ports = new Map<number, number>();
  const current = new Map<number, AtollNode>();
  const history: AtollNode[] = [];
  const nodeIdOf = opts.nodeId ?? ((slot: number) => `n${slot}`);
  // A node still running when this process exits (a crashed test) must not outlive it.
  const reap = () => current.forEach((n) => n.state !== 'exited' && signalGroup(n.pid, 'SIGKILL'));
  process.on('exit', reap);

  function envOf(nodeId: string, port: number, extra: Record<string, string>): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '',
      // Where a node's cells get their scratch root, which a node keeps when it ends: under jest, the test run's
      // own folder (removed with it), not /tmp.
      TMPDIR: os.tmpdir(),
      ...NODE_DEFAULTS,
      ...(opts.env ?? {}),
      ...extra,
      PORT: String(port),
      DATABASE_URL: opts.databaseUrl,
      AUTH_JWT_SECRET: opts.jwtSecret,
      NODE_ID: nodeId,
      NODE_LEASE_MS: String(opts.leaseMs),
      ...(opts.redis ? { REDIS_URL: opts.redis.url, REDIS_KEY_PREFIX: opts.redis.keyPrefix } : {}),
    };
  }

  function nodeOf(slot: number): AtollNode {
    const node = current.get(slot);
    if (!node) throw new Error(`no node in slot ${slot}`);
    return node;
  }

  const cluster: Cluster = {
    options: opts,
    get slots() {
      return [...current.keys()].sort((a, b) => a - b);
    },
    node: nodeOf,
    url: (slot) => nodeOf(slot).url,
    history,
    async start(slot, overrides = {}) {
      const running = current.get(slot);
      if (running && running.state !== 'exited') throw new Error(`slot ${slot} is running (${running.nodeId}, pid ${running.pid})`);
      let port = ports.get(slot);
      if (port === undefined) {
        port = await freePort();
        ports.set(slot, port);
      }
      const nodeId = overrides.nodeId ?? running?.nodeId ?? nodeIdOf(slot);
      const node = launch(slot, nodeId, port, envOf(nodeId, port, overrides.env ?? {}), opts);
      current.set(slot, node);
      history.push(node);
      await untilListening(node, opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      return node;
    },
    async kill(slot) {
      const node = nodeOf(slot);
      if (node.state !== 'exited') signalGroup(node.pid, 'SIGKILL');
      return node.exited;
    },
    async term(slot, timeoutMs = 30_000) {
      const node = nodeOf(slot);
      if (node.state === 'exited') return node.exited;
      if (node.state === 'paused') signalGroup(node.pid, 'SIGCONT');
      process.kill(node.pid, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(node.pid, 'SIGKILL'), timeoutMs);
      const exit = await node.exited;
      clearTimeout(timer);
      // Its cells end with it; any straggler of the group goes too.
      signalGroup(node.pid, 'SIGKILL');
      return exit;
    },
    pause(slot) {
      const node = nodeOf(slot);
      if (node.state !== 'up') throw new Error(`cannot pause ${node.nodeId}: it is ${node.state}`);
      signalGroup(node.pid, 'SIGSTOP');
      node.state = 'paused';
    },
    resume(slot) {
      const node = nodeOf(slot);
      if (node.state !== 'paused') throw new Error(`cannot resume ${node.nodeId}: it is ${node.state}`);
      signalGroup(node.pid, 'SIGCONT');
      node.state = 'up';
    },
    async restart(slot, how = {}) {
      if (how.signal === 'SIGTERM') await cluster.term(slot);
      else await cluster.kill(slot);
      return cluster.start(slot, { nodeId: how.nodeId });
    },
    async close() {
      const nodes = [...current.values()].filter((n) => n.state !== 'exited');
      for (const n of nodes) signalGroup(n.pid, 'SIGKILL');
      await Promise.all(nodes.map((n) => n.exited));
      process.off('exit', reap);
    },
  };

  try {
    // The first alone (it applies the migrations), then the others together.
    await cluster.start(1);
    await Promise.all(Array.from({ length: opts.size - 1 }, (_, i) => cluster.start(i + 2)));
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}

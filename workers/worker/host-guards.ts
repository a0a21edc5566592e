/**
 * What a worker takes away from agent code before any agent module loads, beyond what Node's permission
 * model refuses (child processes, native addons, files outside the allowed folders): signals to any process
 * but its own cell, the priority of any thread but its own (the front, other cells and other users' workers
 * share its OS user unless cells run as users of their own), and workers of its own (which would escape the
 * worker's heap budget and outlive its run), module hooks (a thread of their own, unguarded; or hooks that outlive
 * the run), V8's flags (the whole process's), BroadcastChannel (every thread of the cell, whoever it serves), `node:sqlite` (which the permission model does not check); and `process._rawDebug`'s way around the cell's tagging of what workers
 * print. Properties are made read-only and non-configurable, so agent code cannot put them back.
 */
import fs from 'node:fs';
import nodeModule, { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import { format } from 'node:util';
import v8 from 'node:v8';
import workerThreads from 'node:worker_threads';
import type { WorkerWall } from '../../protocol/cell-messages.js';

export function refusal(what: string): Error {
  return Object.assign(new Error(`${what} is not available to agent code`), { code: 'ERR_ACCESS_DENIED' });
}

/** Sets a guard in place of `key`: read-only and non-configurable, so agent code cannot put the original back. */
export function pin(obj: object, key: string, value: unknown, enumerable = true): void {
  Object.defineProperty(obj, key, { value, writable: false, configurable: false, enumerable });
}

/**
 * A stand-in that counts the wall and throws its refusal, whatever it is called with; a `function`, not an arrow,
 * so `new` on it (a refused class) is refused the same way rather than failing as "not a constructor".
 */
export function refusing(count: () => void, what: string): () => never {
  return function refused(): never {
    count();
    throw refusal(what);
  };
}

/** Where a guard reports what it refused (the worker runtime puts it in the run's isolation report). */
export type OnRefused = (wall: Extract<WorkerWall, 'signal' | 'priority' | 'worker' | 'module_hooks' | 'v8' | 'sqlite' | 'broadcast_channel'>) => void;

export function guardHost(onRefused: OnRefused, proc: NodeJS.Process = process): void {
  const ownPid = proc.pid;
  const kill = proc.kill.bind(proc);
  const rawKill = (proc as unknown as { _kill: (pid: number, signal: number) => number })._kill.bind(proc);
  // Signals to its own cell stay possible (a run that kills its cell is contained by the supervisor); pid 0
  // and negative pids address process groups, which include the front.
  const guardedKill = (pid: number, signal?: string | number) => {
    if (pid !== ownPid) {
      onRefused('signal');
      throw refusal(`process.kill(${Number(pid)})`);
    }
    return kill(pid, signal);
  };
  pin(proc, 'kill', guardedKill);
  // process.kill calls the binding's _kill at call time, and agent code can reach it directly: guarded the same way.
  const guardedRawKill = (pid: number, signal: number) => {
    if (pid !== ownPid) {
      onRefused('signal');
      throw refusal(`process._kill(${Number(pid)})`);
    }
    return rawKill(pid, signal);
  };
  pin(proc, '_kill', guardedRawKill, false);

  // os.setPriority(pid) renices any thread or process of the same OS user: the front (a DoS on every user), another
  // cell, another user's worker (which then cannot restore its priority and retires). Its own thread (pid 0, or no
  // pid) stays possible: the worker restores its priority after each run (worker-runtime.ts).
  const setPriority = os.setPriority.bind(os) as (pid: number, priority?: number) => void;
  const guardedSetPriority = (pidOrPriority: number, priority?: number) => {
    if (priority === undefined) return setPriority(0, pidOrPriority);
    if (pidOrPriority !== 0) {
      onRefused('priority');
      throw refusal(`os.setPriority(${Number(pidOrPriority)})`);
    }
    return setPriority(0, priority);
  };
  pin(os, 'setPriority', guardedSetPriority);

  // process._rawDebug writes from C++ straight to the cell's stderr, around the cell's tagging of what workers print
  // (workers/cell/worker-output.ts): it goes through this thread's stderr like console.error.
  const stderr = proc.stderr;
  const rawDebug = (...args: unknown[]) => void stderr.write(`${format(...args)}\n`);
  pin(proc, '_rawDebug', rawDebug, false);

  pin(workerThreads, 'Worker', refusing(() => onRefused('worker'), 'new Worker()'));
  // A BroadcastChannel joins every thread of the process that opens one by the same name: other users' workers in
  // the cell, warm spares that serve nobody yet. Whatever one run posts, another user's worker would hear.
  const broadcastChannel = refusing(() => onRefused('broadcast_channel'), 'BroadcastChannel');
  pin(workerThreads, 'BroadcastChannel', broadcastChannel);
  pin(globalThis, 'BroadcastChannel', broadcastChannel, false);
  // postMessageToThread (Node 20.20, 22.5+) is the same channel by thread id: through the cell's main thread to any
  // thread's process 'workerMessage', another user's worker included. Counted as the same wall.
  if ('postMessageToThread' in workerThreads) pin(workerThreads, 'postMessageToThread', refusing(() => onRefused('broadcast_channel'), 'worker_threads.postMessageToThread()'));
  // Node 24's Web Locks (worker_threads.locks, the same object as navigator.locks) are the process's: a request with
  // `ifAvailable` tells whether another thread holds a name, a user's worker or another's. Counted as the same wall.
  const locks = (workerThreads as { locks?: object }).locks;
  if (locks) {
    const lockManager = Object.getPrototypeOf(locks) as object;
    for (const name of ['request', 'query']) pin(lockManager, name, refusing(() => onRefused('broadcast_channel'), `Web Locks ${name}()`), false);
  }
  // module.register starts Node's module-hooks thread: a thread of the cell with none of these guards.
  // module.registerHooks (Node 22.15+) runs in the thread, but its hooks outlive the run and rewrite every module
  // later runs of the worker load.
  // module.enableCompileCache (Node 22.1+) too: the thread's later runs (another user's with THREAD_REUSE=any) would
  // load code cached in a folder the run chose and may still write (the cell's own, as the front's OS user).
  for (const name of ['register', 'registerHooks', 'enableCompileCache']) {
    if (!(name in nodeModule)) continue;
    pin(nodeModule, name, refusing(() => onRefused('module_hooks'), `module.${name}()`));
  }

  // V8's flags are the whole process's: the cell's main thread, other users' workers, later workers. They write
  // fds 1 and 2 from C++ (--trace-gc, %DebugPrint with --allow-natives-syntax), files anywhere the OS user may
  // (--perf-basic-prof-path on Node 22 and 24), or abort the cell.
  pin(v8, 'setFlagsFromString', refusing(() => onRefused('v8'), 'v8.setFlagsFromString()'));
  // v8.queryObjects (Node 20.20, 22, 24) with format 'summary' prints every object of the thread's heap of a class, with
  // its contents: a run's shared memory (its start flag and the seal its done is signed with), what earlier runs left.
  if ('queryObjects' in v8) pin(v8, 'queryObjects', refusing(() => onRefused('v8'), 'v8.queryObjects()'));
  // v8.setHeapSnapshotNearHeapLimit outlives the run: V8 later writes the thread's whole heap (a later run's, another
  // user's with THREAD_REUSE=any) into the cell's working directory, its scratch folder, where runs beside it may read
  // it when cells share the front's OS user (measured on Node 20 and 24, under the permission model).
  pin(v8, 'setHeapSnapshotNearHeapLimit', refusing(() => onRefused('v8'), 'v8.setHeapSnapshotNearHeapLimit()'));

  // fs.cpSync (Node 22 and 24: C++) copies a readable tree's symbolic links into the scratch folder, past the permission
  // model's refusal of fs.symlink (measured on 22.23 and 24.22). A link there is read and written through as if its
  // target were in the folder: a run overwrote typescript/bin/tsc through a copy of node_modules/.bin/tsc, a file the
  // next build runs outside any sandbox. Refused, as Node 20's permission model refuses it (and every fs.cp: on 22 and 24
  // the permission model refuses fs.cp and fs.promises.cp too, measured, so no cp worked for agents but this one).
  pin(fs, 'cpSync', () => {
    throw refusal('fs.cpSync()');
  });

  // node:sqlite (Node 22 and 24) opens database files the permission model does not check (measured on 22.23 and
  // 24.22: a file outside --allow-fs-read opened and read): the front's SQLite file, when cells share its OS user.
  let sqlite: Record<string, unknown> | undefined;
  try {
    sqlite = (proc as unknown as { getBuiltinModule?: (id: string) => Record<string, unknown> | undefined }).getBuiltinModule?.('node:sqlite');
  } catch {
    // Not in this Node (20), or behind --experimental-sqlite (22.5 to 22.12), which cells never get.
  }
  if (sqlite) {
    for (const name of Object.keys(sqlite)) {
      if (typeof sqlite[name] !== 'function') continue;
      pin(sqlite, name, refusing(() => onRefused('sqlite'), `node:sqlite ${name}`));
    }
  }
  // ES modules importing { Worker } from 'node:worker_threads', { setPriority } from 'node:os', { register } from
  // 'node:module', { setFlagsFromString } from 'node:v8' or { cpSync } from 'node:fs' see the guarded values too.
  syncBuiltinESMExports();
}

/**
 * What a worker takes away from agent code before any agent module loads, beyond what Node's permission
 * model refuses (child processes, native addons, files outside the allowed folders): signals to any process
 * but its own cell, and workers of its own (which would escape the worker's heap budget and outlive
 * its run). Properties are made read-only and non-configurable, so agent code cannot put them back.
 */
import { syncBuiltinESMExports } from 'node:module';
import workerThreads from 'node:worker_threads';

export function refusal(what: string): Error {
  return Object.assign(new Error(`${what} is not available to agent code`), { code: 'ERR_ACCESS_DENIED' });
}

/** Where a guard reports what it refused (the worker runtime puts it in the run's isolation report). */
export type OnRefused = (wall: 'signal' | 'worker') => void;

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
  Object.defineProperty(proc, 'kill', { value: guardedKill, writable: false, configurable: false, enumerable: true });
  // process.kill calls the binding's _kill at call time, and agent code can reach it directly: guarded the same way.
  const guardedRawKill = (pid: number, signal: number) => {
    if (pid !== ownPid) {
      onRefused('signal');
      throw refusal(`process._kill(${Number(pid)})`);
    }
    return rawKill(pid, signal);
  };
  Object.defineProperty(proc, '_kill', { value: guardedRawKill, writable: false, configurable: false, enumerable: false });

  class RefusedWorker {
    constructor() {
      onRefused('worker');
      throw refusal('new Worker()');
    }
  }
  Object.defineProperty(workerThreads, 'Worker', { value: RefusedWorker, writable: false, configurable: false, enumerable: true });
  // ES modules importing { Worker } from 'node:worker_threads' see the guarded value too.
  syncBuiltinESMExports();
}

/**
 * Built-in `chaos` (only with ENABLE_CHAOS_AGENTS=1): misbehaves on purpose so tests and load scripts can
 * prove containment. `input.mode` (or `input.text`) picks the misbehaviour; see README "The chaos agent".
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import type { Agent, UserExecutionContext } from '../agent-contract.js';

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new Error('aborted'));
    }, { once: true });
  });

export default class ChaosAgent implements Agent {
  static agentName = 'chaos';
  static description = 'Misbehaves on demand: see README "The chaos agent" for its modes.';
  /** The mode, by name (`mode`, else `text`), and its duration. */
  static input = {
    type: 'object',
    anyOf: [{ required: ['mode'] }, { required: ['text'] }],
    properties: { mode: { type: 'string' }, text: { type: 'string' }, ms: { type: 'number' } },
  };
  static readonly modes = [
    'ok', 'throw', 'exit', 'abort', 'hang', 'hang_async', 'oom_heap', 'oom_fatal', 'oom_external', 'oom_map', 'oom_string', 'oom_json',
    'recursion', 'leak_timer', 'leak_socket', 'leak_child', 'leak_global', 'leak_prototype', 'flood_events', 'huge_event', 'huge_result', 'fill_disk', 'slow', 'busy',
  ] as const;

  async execute(ctx: UserExecutionContext): Promise<string> {
    const mode = String(ctx.input.mode ?? ctx.input.text);
    const ms = typeof ctx.input.ms === 'number' ? ctx.input.ms : 1000;
    ctx.emit('agent_thinking', { reasoning: `chaos mode ${mode}` });
    switch (mode) {
      case 'ok':
        return 'ok';
      case 'throw':
        throw new Error('chaos: thrown on purpose');
      case 'exit':
        process.exit(1);
      case 'hang':
        for (;;) {
          // blocks the worker's event loop forever; only termination ends it
        }
      case 'hang_async':
        return new Promise<string>(() => undefined); // ignores ctx.signal
      case 'oom_heap': {
        const hoard: unknown[] = [];
        for (;;) hoard.push(new Array(10_000).fill(hoard.length));
      }
      case 'oom_external': {
        // Off-heap: Buffers are not counted by resourceLimits; the cell's memory watchdog must catch this.
        const hoard: Buffer[] = [];
        for (;;) hoard.push(Buffer.alloc(16 * 1024 * 1024, 1));
      }
      case 'oom_map': {
        const map = new Map<number, object>();
        for (let i = 0; ; i++) map.set(i, { i });
      }
      case 'oom_string': {
        const strings: string[] = [];
        for (let i = 0; ; i++) strings.push('x'.repeat(1 << 20) + i);
      }
      case 'oom_json': {
        const big = Array.from({ length: 20_000 }, (_, i) => ({ i, s: 'y'.repeat(100) }));
        const copies: string[] = [];
        for (;;) copies.push(JSON.stringify(big));
      }
      case 'recursion': {
        const dive = (n: number): number => dive(n + 1) + 1;
        return String(dive(0));
      }
      case 'abort':
        // Aborts the whole cell process, every time: the deterministic way to kill a cell from a run.
        // (process.abort() itself is refused in worker threads; the signal is not.)
        process.kill(process.pid, 'SIGABRT');
        return new Promise<string>(() => undefined);
      case 'oom_fatal':
        // Aborts the whole process despite resourceLimits (nodejs/node#47224): kills this cell.
        new Array(2 ** 28).fill(0);
        return 'unreachable';
      case 'leak_timer':
        setInterval(() => undefined, 1000);
        return 'left an interval running';
      case 'leak_socket':
        // A UDP socket on a port the kernel picked: agents may not listen (the listening wall, egress-guards.ts).
        dgram.createSocket('udp4').bind(0, '127.0.0.1');
        return 'left a socket open';
      case 'leak_child':
        spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
        return 'left a child process running';
      case 'leak_prototype':
        (Array.prototype as unknown as Record<string, unknown>).chaosLeak = () => 'polluted';
        return 'polluted Array.prototype';
      case 'huge_event':
        ctx.emit('partial_result', { text: 'z'.repeat(10 * 1024 * 1024) });
        return 'unreachable';
      case 'huge_result':
        return 'r'.repeat(4 * 1024 * 1024);
      case 'fill_disk': {
        // Writes its scratch folder full in one synchronous loop, 1 MiB at a time: its cell's scratch watch ends it
        // past RUN_SCRATCH_MB. Stops by itself at 4 GiB, so a server with the watch off is not left without disk.
        const chunk = Buffer.alloc(1024 * 1024, 0x66);
        const fd = fs.openSync(path.join(ctx.scratchDir, 'fill'), 'w');
        try {
          for (let i = 0; i < 4096; i++) fs.writeSync(fd, chunk);
        } finally {
          fs.closeSync(fd);
        }
        return 'wrote 4 GiB';
      }
      case 'leak_global':
        (globalThis as Record<string, unknown>)[`chaos_leak_${ctx.runId}`] = ctx.input;
        return 'left a global behind';
      case 'flood_events':
        for (let i = 0; ; i++) ctx.emit('partial_result', { text: `flood ${i} ` });
      case 'slow':
        await sleep(ms, ctx.signal);
        return `slept ${ms} ms`;
      case 'busy': {
        // Keeps a core busy for `ms`, then answers: CPU-hungry but legitimate (it yields to other runs). With
        // `until_demoted`, it stops as soon as its thread was lowered in priority (a state tests can wait for,
        // however little CPU a starved machine gives it).
        const end = Date.now() + ms;
        const priority = os.getPriority(0); // its thread's nice value, inherited from the cell (not always 0)
        for (let i = 1; Date.now() < end; i++) {
          if (ctx.input.until_demoted === true && i % 100_000 === 0 && os.getPriority(0) > priority) return 'busy until demoted';
        }
        return `busy ${ms} ms`;
      }
      default:
        throw new Error(`chaos: unknown mode ${JSON.stringify(mode)}`);
    }
  }
}

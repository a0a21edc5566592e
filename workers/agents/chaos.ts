/**
 * Built-in `chaos` (only with ENABLE_CHAOS_AGENTS=1): misbehaves on purpose so tests and load scripts can
 * prove containment. `input.mode` (or `input.text`) picks the misbehaviour; see README "The chaos agent".
 */
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
  static description = 'Misbehaves on demand (throw, exit, hang, hang_async, oom_heap, oom_fatal, leak_timer, leak_global, flood_events, slow, ok).';

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
          // blocks the thread's event loop forever; only termination ends it
        }
      case 'hang_async':
        return new Promise<string>(() => undefined); // ignores ctx.signal
      case 'oom_heap': {
        const hoard: unknown[] = [];
        for (;;) hoard.push(new Array(10_000).fill(hoard.length));
      }
      case 'oom_fatal':
        // Aborts the whole process despite resourceLimits (facts.md): kills this cell.
        new Array(2 ** 28).fill(0);
        return 'unreachable';
      case 'leak_timer':
        setInterval(() => undefined, 1000);
        return 'left an interval running';
      case 'leak_global':
        (globalThis as Record<string, unknown>)[`chaos_leak_${ctx.runId}`] = ctx.input;
        return 'left a global behind';
      case 'flood_events':
        for (let i = 0; ; i++) ctx.emit('partial_result', { text: `flood ${i} ` });
      case 'slow':
        await sleep(ms, ctx.signal);
        return `slept ${ms} ms`;
      default:
        throw new Error(`chaos: unknown mode ${JSON.stringify(mode)}`);
    }
  }
}

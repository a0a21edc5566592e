/**
 * What each run asks for. Chaos runs are placed so the share is exact over the phase (not random), and
 * their modes are dealt round robin, so a short run still covers every mode it can.
 */
import type { LoadOptions } from './options.js';

export interface PlannedRun {
  kind: 'healthy' | 'chaos';
  mode: string | null;
  agent: string;
  input: Record<string, unknown>;
  expectedResponse: string | null;
}

export function createWorkload(opts: Pick<LoadOptions, 'agent' | 'input' | 'chaosModes' | 'chaosMs'>, chaosShare: number) {
  let issued = 0;
  let chaosIssued = 0;
  return {
    next(userId: string, index: number): PlannedRun {
      const k = issued++;
      const isChaos = Math.floor((k + 1) * chaosShare) > Math.floor(k * chaosShare);
      if (isChaos) {
        const mode = opts.chaosModes[chaosIssued++ % opts.chaosModes.length];
        return { kind: 'chaos', mode, agent: 'chaos', input: { mode, text: mode, ms: opts.chaosMs }, expectedResponse: null };
      }
      // A per-run tag in the text lets echo's answer prove it came from this run's own input.
      const text = `${opts.input.text} [${userId}#${index}]`;
      return { kind: 'healthy', mode: null, agent: opts.agent, input: { ...opts.input, text }, expectedResponse: opts.agent === 'echo' ? text : null };
    },
  };
}

/**
 * One phase of load: every user runs its loop (closed loop with think time, or burst), bounded by a
 * count per user and by wall-clock; then the phase ends by itself.
 */
import { performance } from 'node:perf_hooks';
import type { LoadOptions } from './options.js';
import { sleep } from './stats.js';
import { newObservation, type Counters, type RunObservation, type VirtualUser } from './virtual-user.js';
import { createWorkload } from './workload.js';

export interface PhaseResult {
  name: string;
  chaos: number;
  startedAt: Date;
  durationMs: number;
  observations: RunObservation[];
  counters: Counters;
  /** The loops stopped on the wall-clock cap rather than their count. */
  stoppedByTime: boolean;
}

/** After a refusal, wait at least this long: a refused user must not spin. */
const REFUSAL_BACKOFF_MS = 250;

export async function runPhase(opts: LoadOptions, name: string, chaos: number, users: VirtualUser[], counters: Counters, interrupted: () => boolean): Promise<PhaseResult> {
  users.forEach((u) => u.useCounters(counters));
  const workload = createWorkload(opts, chaos);
  const observations: RunObservation[] = [];
  const startedAt = new Date();
  const t0 = performance.now();
  const stopAt = t0 + Math.min(opts.durationMs ?? Infinity, opts.maxTimeMs);
  let stoppedByTime = false;

  const think = () => opts.thinkMs.min + Math.random() * (opts.thinkMs.max - opts.thinkMs.min);
  const observe = (user: VirtualUser, index: number) => {
    const plan = workload.next(user.userId, index);
    const obs = newObservation({ phase: name, user: user.userId, index, kind: plan.kind, mode: plan.mode, expectedResponse: plan.expectedResponse });
    observations.push(obs);
    return { obs, plan };
  };

  async function closedLoop(user: VirtualUser, delayMs: number) {
    await sleep(Math.min(delayMs, Math.max(0, stopAt - performance.now())));
    for (let i = 0; i < opts.runsPerUser; i++) {
      if (performance.now() >= stopAt || user.disconnected || interrupted()) {
        if (performance.now() >= stopAt && (opts.durationMs === null || opts.durationMs > opts.maxTimeMs)) stoppedByTime = true;
        return;
      }
      const { obs, plan } = observe(user, i);
      await user.start(obs, plan.agent, plan.input, opts.ackTimeoutMs);
      await user.waitTerminal(obs, opts.runTimeoutMs);
      const pause = obs.state === 'refused' ? Math.max(REFUSAL_BACKOFF_MS, think()) : think();
      if (pause > 0 && !interrupted()) await sleep(Math.min(pause, Math.max(0, stopAt - performance.now())));
    }
  }

  async function burst(user: VirtualUser) {
    const sent = Array.from({ length: opts.runsPerUser }, (_, i) => {
      const { obs, plan } = observe(user, i);
      return user.start(obs, plan.agent, plan.input, opts.ackTimeoutMs).then(() => user.waitTerminal(obs, opts.runTimeoutMs));
    });
    await Promise.all(sent);
  }

  await Promise.all(
    users.map((user, i) => (opts.burst ? burst(user) : closedLoop(user, opts.users > 1 ? (opts.rampUpMs * i) / (opts.users - 1) : 0))),
  );
  return { name, chaos, startedAt, durationMs: performance.now() - t0, observations, counters, stoppedByTime };
}

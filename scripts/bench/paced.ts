/**
 * An open-loop paced load: runs are sent on a fixed schedule (rate per second), dealt round robin over the clients,
 * whether or not earlier runs have finished, so a slow server meets the same arrivals as a fast one. Each run is a
 * healthy one or a chaos one as scripts/load/workload.ts deals them (an exact share, modes round robin). Latencies
 * are the clients' own (scripts/load/virtual-user.ts): send → first event of the run, and send → terminal event.
 */
import { performance } from 'node:perf_hooks';
import { percentiles, sleep, type Percentiles } from '../load/stats.js';
import { newObservation, type RunObservation } from '../load/virtual-user.js';
import { createWorkload } from '../load/workload.js';
import type { Clients } from './driver.js';

export interface PacedOptions {
  ratePerS: number;
  durationMs: number;
  /** Share of chaos runs, 0..1, and the modes they are dealt over. */
  chaosShare: number;
  chaosModes: string[];
  agent: string;
  /** After the last send: the most it waits for the runs still in flight. */
  drainMs: number;
}

export interface PacedPhase {
  /** The schedule's rate, and the rate at which runs were really sent. */
  rate_per_s: number;
  sent_per_s: number;
  duration_ms: number;
  runs: number;
  chaos_share: number;
  chaos_runs: number;
  healthy_runs: number;
  healthy_completed: number;
  /** Healthy runs refused, failed, or with no terminal event within the drain time (target 0). */
  healthy_not_completed: number;
  /** Healthy runs: send → first event of the run on its socket (every accepted run that got one). */
  first_event_ms: Percentiles;
  /** Healthy completed runs: send → terminal event. */
  terminal_ms: Percentiles;
  /** Chaos runs by `mode:status` (`unfinished` when no terminal event came). */
  chaos_outcomes: Record<string, number>;
}

const ACK_TIMEOUT_MS = 15_000;

export async function pacedLoad(clients: Clients, opts: PacedOptions): Promise<PacedPhase> {
  const workload = createWorkload({ agent: opts.agent, input: { text: 'paced' }, chaosModes: opts.chaosModes, chaosMs: 1000 }, opts.chaosShare);
  const observations: RunObservation[] = [];
  const pending: Promise<void>[] = [];
  const interval = 1000 / opts.ratePerS;
  const t0 = performance.now();
  for (let i = 0; ; i++) {
    const due = t0 + i * interval;
    if (due - t0 >= opts.durationMs) break;
    const wait = due - performance.now();
    // Behind schedule (a busy client), send at once: the arrivals stay those of the schedule.
    if (wait > 1) await sleep(wait);
    const user = clients.users[i % clients.users.length];
    const plan = workload.next(user.userId, i);
    const obs = newObservation({ phase: 'paced', user: user.userId, index: i, kind: plan.kind, mode: plan.mode, expectedResponse: null });
    observations.push(obs);
    pending.push(user.start(obs, plan.agent, plan.input, ACK_TIMEOUT_MS).then(() => user.waitTerminal(obs, opts.drainMs)));
  }
  const sentMs = performance.now() - t0;
  await Promise.all(pending);
  return summarizePaced(observations, { ratePerS: opts.ratePerS, chaosShare: opts.chaosShare, sentMs, durationMs: performance.now() - t0 });
}

export function summarizePaced(observations: RunObservation[], at: { ratePerS: number; chaosShare: number; sentMs: number; durationMs: number }): PacedPhase {
  const healthy = observations.filter((o) => o.kind === 'healthy');
  const chaos = observations.filter((o) => o.kind === 'chaos');
  const completed = healthy.filter((o) => o.status === 'completed');
  const outcomes: Record<string, number> = {};
  for (const o of chaos) {
    const k = `${o.mode}:${o.status ?? (o.state === 'accepted' ? 'unfinished' : o.refusedCode ?? o.state)}`;
    outcomes[k] = (outcomes[k] ?? 0) + 1;
  }
  return {
    rate_per_s: Math.round(at.ratePerS * 100) / 100,
    sent_per_s: at.sentMs > 0 ? Math.round((observations.length / (at.sentMs / 1000)) * 100) / 100 : 0,
    duration_ms: Math.round(at.durationMs),
    runs: observations.length,
    chaos_share: at.chaosShare,
    chaos_runs: chaos.length,
    healthy_runs: healthy.length,
    healthy_completed: completed.length,
    healthy_not_completed: healthy.length - completed.length,
    first_event_ms: percentiles(healthy.filter((o) => o.firstEventMs !== null).map((o) => o.firstEventMs!)),
    terminal_ms: percentiles(completed.map((o) => o.terminalMs!)),
    chaos_outcomes: outcomes,
  };
}

/**
 * Atoll at half of its peak: the paced load (paced.ts) at half the runs/s that the same design's throughput row
 * reached in this bench run, so the load calibrates itself to the machine and the hour. Two measurements:
 * time to first event (healthy runs only, on a server that just produced its throughput row), and healthy runs'
 * latency with a share of chaos runs against the same load without them, on one server started for it.
 */
import { DEFAULT_CHAOS_MODES } from '../load/options.js';
import { ratio } from '../load/stats.js';
import { connectClients, drive } from './driver.js';
import { metricValue } from '../load/prom.js';
import { pacedLoad, type PacedPhase } from './paced.js';

export const SHARE_OF_PEAK = 0.5;
export const CHAOS_SHARE = 0.2;
/** The load script's default modes: every kind of misbehaviour except the cell killers. */
export const CHAOS_MODES = DEFAULT_CHAOS_MODES;
/**
 * The chaos server beside the defaults: the chaos agent on, and a run deadline of 1 s (as the load tests use), so
 * a `hang` costs a worker one second instead of the default 30 s, which would hold every slot for the whole phase.
 */
export const CHAOS_SERVER_ENV = { ENABLE_CHAOS_AGENTS: '1', RUN_TIMEOUT_MS: '1000' };

export interface ChaosComparison {
  share: number;
  modes: string[];
  /** Settings of the chaos server that differ from Atoll's defaults. */
  server_env: Record<string, string>;
  /**
   * Runs/s of the schedule measured: half of peak, halved again (up to MAX_HALVINGS times) while the machine could
   * not carry it with the chaos share (a run left without its terminal event, or healthy p99 past 2 s: a growing
   * backlog), each tried rate in `tried_rates`.
   */
  rate_per_s: number;
  tried_rates: number[];
  /** The same schedule twice on the same server: healthy runs only, then with the chaos share. */
  without: PacedPhase;
  with: PacedPhase;
  /** Healthy terminal latency with chaos / without (target ≤ 1.5 at p99). */
  healthy_p50_ratio: number | null;
  healthy_p99_ratio: number | null;
}

export interface PhaseSettings {
  durationMs: number;
  drainMs: number;
  clients: number;
  warmup: number;
}

/** Healthy runs only at `rate` on a running Atoll. `prefix`: the user ids of its throughput clients, whose workers are warm. */
export async function halfPeak(url: string, prefix: string, rate: number, s: PhaseSettings): Promise<PacedPhase> {
  const clients = await connectClients(url, s.clients, 'dev-login', prefix);
  try {
    return await pacedLoad(clients, { ratePerS: rate, durationMs: s.durationMs, chaosShare: 0, chaosModes: CHAOS_MODES, agent: 'steps', drainMs: s.drainMs });
  } finally {
    clients.close();
  }
}

/**
 * The issue asks for the comparison "at a load the machine can carry": at half of the healthy peak, the chaos
 * runs' worker replacements (~0.1-0.2 s of CPU each) can need more than two cores, and the queue then grows for
 * the whole phase. Carried: every run, healthy or not, got its terminal event, and healthy runs' p99 stayed under
 * CARRIED_P99_MS (a chaos run ends within its 1 s deadline: a healthy run waiting longer means the backlog grew).
 */
const MAX_HALVINGS = 3;
const CARRIED_P99_MS = 2000;
const carried = (p: PacedPhase) =>
  p.healthy_not_completed === 0 && !Object.keys(p.chaos_outcomes).some((k) => k.endsWith(':unfinished')) && (p.terminal_ms.p99 ?? Infinity) <= CARRIED_P99_MS;

/** Waits (at most `timeoutMs`) until the server has no run queued or active, by its own gauges. */
async function untilIdle(url: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const metrics = await fetch(`${url}/metrics`).then((res) => res.text(), () => '');
    if (metricValue(metrics, 'atoll_runs_queued') === 0 && metricValue(metrics, 'atoll_runs_active') === 0) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** On a server started with CHAOS_SERVER_ENV: warm-up, the schedule without chaos, then with it. */
export async function chaosComparison(url: string, rate: number, s: PhaseSettings, log: (msg: string) => void): Promise<ChaosComparison> {
  const clients = await connectClients(url, s.clients, 'dev-login', 'half-peak-chaos');
  try {
    // A fresh server: every user's workers start and serve a few runs before anything is measured.
    await drive(clients, { total: Math.max(s.warmup, 4 * s.clients), inflightPerClient: 2, agent: 'steps', input: { text: 'warm' }, runTimeoutMs: s.drainMs });
    const tried: number[] = [];
    let without: PacedPhase;
    let withChaos: PacedPhase;
    for (let r = rate; ; r /= 2) {
      // What a rate the machine could not carry left queued must not count against the next one.
      if (tried.length > 0) await untilIdle(url, s.drainMs * 4);
      tried.push(r);
      const shape = { ratePerS: r, durationMs: s.durationMs, chaosModes: CHAOS_MODES, agent: 'steps', drainMs: s.drainMs };
      log(`half of peak: ${r.toFixed(1)} runs/s without chaos`);
      without = await pacedLoad(clients, { ...shape, chaosShare: 0 });
      log(`half of peak: ${r.toFixed(1)} runs/s with ${CHAOS_SHARE * 100}% chaos`);
      withChaos = await pacedLoad(clients, { ...shape, chaosShare: CHAOS_SHARE });
      if (carried(withChaos) || tried.length > MAX_HALVINGS) break;
    }
    return {
      share: CHAOS_SHARE,
      rate_per_s: tried[tried.length - 1]!,
      tried_rates: tried,
      modes: [...CHAOS_MODES],
      server_env: CHAOS_SERVER_ENV,
      without,
      with: withChaos,
      healthy_p50_ratio: ratio(withChaos.terminal_ms.p50, without.terminal_ms.p50, 3),
      healthy_p99_ratio: ratio(withChaos.terminal_ms.p99, without.terminal_ms.p99, 3),
    };
  } finally {
    clients.close();
  }
}

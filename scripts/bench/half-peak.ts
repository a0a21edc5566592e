/**
 * Atoll at half of its peak: the paced load (paced.ts) at half the runs/s that the same design's throughput row
 * reached in this bench run, so the load calibrates itself to the machine and the hour. Two measurements:
 * time to first event (healthy runs only, on a server that just produced its throughput row), and healthy runs'
 * latency with a share of chaos runs against the same load without them, on one server started for it.
 */
import { DEFAULT_CHAOS_MODES } from '../load/options.js';
import { ratio } from '../load/stats.js';
import { connectClients, drive } from './driver.js';
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

/** On a server started with CHAOS_SERVER_ENV: warm-up, the schedule without chaos, then with it. */
export async function chaosComparison(url: string, rate: number, s: PhaseSettings, log: (msg: string) => void): Promise<ChaosComparison> {
  const clients = await connectClients(url, s.clients, 'dev-login', 'half-peak-chaos');
  try {
    // A fresh server: every user's workers start and serve a few runs before anything is measured.
    await drive(clients, { total: Math.max(s.warmup, 4 * s.clients), inflightPerClient: 2, agent: 'steps', input: { text: 'warm' }, runTimeoutMs: s.drainMs });
    const shape = { ratePerS: rate, durationMs: s.durationMs, chaosModes: CHAOS_MODES, agent: 'steps', drainMs: s.drainMs };
    log(`half of peak: ${rate.toFixed(1)} runs/s without chaos`);
    const without = await pacedLoad(clients, { ...shape, chaosShare: 0 });
    log(`half of peak: ${rate.toFixed(1)} runs/s with ${CHAOS_SHARE * 100}% chaos`);
    const withChaos = await pacedLoad(clients, { ...shape, chaosShare: CHAOS_SHARE });
    return {
      share: CHAOS_SHARE,
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

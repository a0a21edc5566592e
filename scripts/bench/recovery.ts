/**
 * Recovery: SIGKILL cell1 of an idle Atoll and time, from the kill, (1) the first run served at all (by
 * the surviving cell), (2) the replacement's `cell ready` line, (3) the first run served by the
 * replacement. A fresh server per repetition, because the supervisor backs off on repeated deaths.
 */
import { performance } from 'node:perf_hooks';
import { getJson } from '../load/auth.js';
import { metricValue } from '../load/prom.js';
import { median } from '../load/stats.js';
import { connectClients, drive } from './driver.js';
import type { Spawned } from './spawn.js';

export interface RecoverySample {
  first_run_after_death_ms: number | null;
  replacement_ready_ms: number | null;
  served_on_replacement_ms: number | null;
  /** The server's own atoll_cell_restart_seconds (death → replacement ready), in ms. */
  server_restart_ms: number | null;
  /** Probe runs sent after the kill, and how many of them did not complete (sent into the dying cell). */
  probes: number;
  probes_failed: number;
  probe_failure_codes: Record<string, number>;
}

export interface RecoveryReport {
  reps: number;
  first_run_after_death_ms: number | null;
  replacement_ready_ms: number | null;
  served_on_replacement_ms: number | null;
  server_restart_ms: number | null;
  samples: RecoverySample[];
}

const RECOVERY_TIMEOUT_MS = 30_000;
const MAX_PROBES = 2000;
/** After a probe that did not complete: a refusal comes back at once and must not turn into a spin. */
const PROBE_PAUSE_MS = 20;
/** Enough for the probes of a typical recovery (5-8 on this machine); later ones connect as they go. */
const PRECONNECTED_PROBERS = 20;
/** How long the server rests before the kill. */
const SETTLE_MS = 5000;

export async function recoveryOnce(server: Spawned): Promise<RecoverySample> {
  const clients = await connectClients(server.url, 1, 'dev-login', 'recovery');
  const sample: RecoverySample = { first_run_after_death_ms: null, replacement_ready_ms: null, served_on_replacement_ms: null, server_restart_ms: null, probes: 0, probes_failed: 0, probe_failure_codes: {} };
  try {
    await drive(clients, { total: 4, inflightPerClient: 1, agent: 'steps', input: { text: 'warm' }, runTimeoutMs: 10_000 });
    // A server at rest: after its start, a cell's spare workers warm up in turns for a second or more (~0.2 s of CPU
    // each), and a replacement starting beside them would be timed against them, not against the death.
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    // Probers connected beforehand: what is timed is the server serving a run, not a client's log-in and handshake.
    const spare: Awaited<ReturnType<typeof connectClients>>[] = [];
    for (let i = 0; i < PRECONNECTED_PROBERS; i++) spare.push(await connectClients(server.url, 1, 'dev-login', `recovery-probe-${i}`));
    // The cell in slot 1 now, looked up just before the kill: an idle cell grown past CELL_RECYCLE_RSS_RATIO is
    // replaced meanwhile (on a machine busy with the tests, cell1's first pid was gone by the kill: ESRCH).
    let killed = cellInSlot1(server);
    for (let attempt = 0; !alive(killed.pid) && attempt < 50; attempt++) {
      await new Promise((r) => setTimeout(r, 200));
      killed = cellInSlot1(server);
    }
    if (killed.generation > 1) {
      // Not what is measured, but worth knowing: why the first cell1 went.
      const gone = server.cellLog.filter((l) => /^cell1-g/.test(l.cell ?? '') && l.msg !== 'cell ready' && l.msg !== 'cell starting').map((l) => `${l.cell}: ${l.msg}${l.cause ? ` (${l.cause})` : ''}`);
      process.stderr.write(`bench: cell1 was replaced before the kill; killing ${killed.pid} (generation ${killed.generation}). ${gone.join('; ')}\n`);
    }
    const replacement = (l: { cell?: string }) => Number(/^cell1-g(\d+)$/.exec(l.cell ?? '')?.[1] ?? 0) > killed.generation;
    const ready = server.waitForLog((l) => l.msg === 'cell ready' && replacement(l), RECOVERY_TIMEOUT_MS);
    const t0 = performance.now();
    process.kill(killed.pid, 'SIGKILL');
    // One run at a time until one lands on the replacement (ties go to cell1, the first slot). Each probe is a
    // new user: the front keeps a user's runs on the cell that served it lately, which is not cell1 any more.
    while (performance.now() - t0 < RECOVERY_TIMEOUT_MS && sample.probes < MAX_PROBES) {
      const prober = spare.shift() ?? (await connectClients(server.url, 1, 'dev-login', `recovery-probe-${sample.probes}`));
      const r = await drive(prober, { total: 1, inflightPerClient: 1, agent: 'steps', input: { text: 'probe' }, runTimeoutMs: 10_000 }).finally(() => prober.close());
      const user = prober.users[0];
      const at = performance.now() - t0;
      sample.probes++;
      if (r.completed !== 1) {
        sample.probes_failed++;
        for (const [code, n] of Object.entries(r.failed_codes)) sample.probe_failure_codes[code] = (sample.probe_failure_codes[code] ?? 0) + n;
        await new Promise((res) => setTimeout(res, PROBE_PAUSE_MS));
        continue;
      }
      sample.first_run_after_death_ms ??= Math.round(at);
      const run = await getJson(server.url, `/v1/runs/${r.run_refs[0].run_id}`, user.token, 5000);
      if (replacement({ cell: run.body?.ran_on?.cell })) {
        sample.served_on_replacement_ms = Math.round(at);
        break;
      }
      // Served by the surviving cell: the next probes wait for the replacement. Sent back to back, each one a new
      // user, they made the surviving cell retire and start a worker thread per probe (~0.2 s of CPU each) on the
      // cores the replacement was starting on: a storm no real load makes, and it slowed the start it measures.
      await ready;
    }
    spare.forEach((c) => c.close());
    const line = await ready;
    if (line) sample.replacement_ready_ms = Math.round(line.receivedAt - t0);
    const metrics = await fetch(`${server.url}/metrics`).then((res) => res.text());
    const sum = metricValue(metrics, 'atoll_cell_restart_seconds_sum');
    const count = metricValue(metrics, 'atoll_cell_restart_seconds_count');
    if (sum !== null && count) sample.server_restart_ms = Math.round((sum / count) * 1000);
  } finally {
    clients.close();
  }
  return sample;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The ready cell in slot 1 and its generation, from the server's log. */
function cellInSlot1(server: Spawned): { pid: number; generation: number } {
  const last = server.cellLog.filter((l) => l.msg === 'cell ready' && /^cell1-g\d+$/.test(l.cell ?? '') && l.pid).at(-1);
  if (!last) throw new Error('no ready cell1 in the server log');
  return { pid: last.pid!, generation: Number(/-g(\d+)$/.exec(last.cell!)![1]) };
}

export function summarizeRecovery(samples: RecoverySample[]): RecoveryReport {
  const med = (k: 'first_run_after_death_ms' | 'replacement_ready_ms' | 'served_on_replacement_ms' | 'server_restart_ms') => median(samples.map((s) => s[k]).filter((v): v is number => v !== null));
  return {
    reps: samples.length,
    first_run_after_death_ms: med('first_run_after_death_ms'),
    replacement_ready_ms: med('replacement_ready_ms'),
    served_on_replacement_ms: med('served_on_replacement_ms'),
    server_restart_ms: med('server_restart_ms'),
    samples,
  };
}

/**
 * Start-up (issue 15: "a built tree listens within 3 s"): `node scripts/start.js`, what `npm start` runs, on the
 * built tree with a fresh SQLite file and the defaults (2 cells × 2 threads and a warm spare each), from spawn to
 * its `listening` line, which the front logs once its cells are ready. npm's own start (~0.3 s) is not in it.
 */
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { median } from '../load/stats.js';
import { ROOT } from './paths.js';
import { startServer } from './spawn.js';

export interface StartupReport {
  /** What was started: scripts/start.js (the build check, then the server). */
  entry: string;
  /** Median ms from spawn to `listening`. */
  listening_ms: number | null;
  samples_ms: number[];
}

export async function measureStartup(reps: number): Promise<StartupReport> {
  const entry = path.join(ROOT, 'scripts/start.js');
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    // LOG_LEVEL info: the `listening` line is what spawn.ts waits for.
    const s = await startServer(entry, {});
    samples.push(Math.round(s.startedAt - t0));
    await s.stop();
  }
  const mid = median(samples);
  return { entry: path.relative(ROOT, entry), listening_ms: mid === null ? null : Math.round(mid), samples_ms: samples };
}

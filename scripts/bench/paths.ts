/** Where things are, from the compiled location dist/scripts/bench/. */
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '../../..');
export const BENCH_AGENTS_DIR = path.join(ROOT, 'scripts/bench-agents');
export const ATOLL_ENTRY = path.join(ROOT, 'dist/server/main.js');
export const BASELINE_ENTRY = path.join(__dirname, 'baseline-server.js');
export const RUN_CHILD_ENTRY = path.join(__dirname, 'run-child.js');
export const PISCINA_TASK = path.join(__dirname, 'piscina-task.js');
export const agentFile = (name: string) => path.join(BENCH_AGENTS_DIR, `${name}.mjs`);

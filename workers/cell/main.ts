/** Cell process entry (forked by the front's supervisor): wires IPC to the cell runtime. */
import { randomFill } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { CellToFront, FrontToCell, ProcessMetricFamily } from '../../protocol/cell-messages.js';
import { createFairOutbox } from './fair-outbox.js';
import { createCellRuntime } from './cell-runtime.js';
import { tagOutput } from './worker-output.js';

if (!process.send) throw new Error('workers/cell/main must be forked with an IPC channel');
// libuv starts its thread pool (fs, crypto, zlib, dns.lookup: every worker's and this thread's) at its first job, all
// of its OS threads at once, synchronously. Started now, they are among the threads the front notes below as Node's
// own and never demotes: started later by a run's first job, a run that kept them busy had them lowered to nice 19
// for the cell's life, every later run's (another user's) file, crypto and DNS work with them, and no worker could
// take their priority back.
randomFill(new Uint8Array(1), () => undefined);
// Before the pool exists: every OS thread of this process now is Node's own (V8's platform, libuv), none a run's.
process.send([{ type: 'booting' }] satisfies CellToFront[]);

// The cell's own log keeps the stream's own write; from here on, what reaches its stdout and stderr through
// JavaScript is its workers' output (what agent code prints), written as data (worker-output.ts).
const writeOwnLog = process.stderr.write.bind(process.stderr);
tagOutput(process.stdout, 'stdout', { cell_pid: process.pid });
tagOutput(process.stderr, 'stderr', { cell_pid: process.pid });

// The cell's own default process metrics (CPU, memory, event loop, GC): the front merges them into its
// scrape labelled with this cell's id. prom-client loads at the first report, after the cell is ready: ~50 ms
// less between a dead cell and its replacement.
let registry: Registry | null = null;
function processRegistry(): Registry {
  if (registry) return registry;
  const client = require('prom-client') as typeof import('prom-client');
  registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  // prom-client reads these from /proc/self, which the permission model keeps from this process: they reported 0
  // (memory) or nothing. Resident memory comes from libuv instead; the rest are dropped rather than shown as 0.
  for (const unreadable of ['process_resident_memory_bytes', 'process_virtual_memory_bytes', 'process_heap_bytes', 'process_open_fds', 'process_max_fds']) {
    registry.removeSingleMetric(unreadable);
  }
  new client.Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  return registry;
}

// A batch's callbacks run once it is in the pipe: what is there reaches the front even if this process dies next.
const toFront = createFairOutbox((batch, done) => {
  if (process.connected) process.send!(batch, (err: Error | null) => done(err));
});
/**
 * A run's end goes out at once (with its worker's messages before it, in order; after the batch already in the
 * channel): if this cell dies a moment later, the front must already know the run finished, or it would take it
 * for a suspect and run it again.
 * A lost start costs less (a suspect is re-run alone in quarantine and found there), so starts are batched.
 */
const URGENT: ReadonlySet<CellToFront['type']> = new Set(['run_finished', 'memory_exceeded', 'ready', 'init_failed']);
const runtime = createCellRuntime({
  send: (msg, written, bytes) => {
    toFront.send(msg, written, bytes);
    if (URGENT.has(msg.type)) toFront.flush();
  },
  exit: (code) => {
    toFront.drain();
    process.exit(code);
  },
  processMetrics: async () => (await processRegistry().getMetricsAsJSON()) as unknown as ProcessMetricFamily[],
  outputs: [process.stdout, process.stderr],
  log: (obj, msg) => writeOwnLog(JSON.stringify({ level: 40, msg, ...obj, cell_pid: process.pid }) + '\n'),
});
process.on('message', (received: FrontToCell[]) => {
  for (const msg of received) void runtime.handle(msg);
});
// If the front goes away, so does the cell: no orphans.
process.on('disconnect', () => process.exit(0));

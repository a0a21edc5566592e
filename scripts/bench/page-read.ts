/**
 * What a page cut by size costs the store: `store.listEvents(run, 0, 1000, 1 MiB)` on a run of 1,000 events of
 * 64 KiB (GET /v1/runs/:id/events and a replay ask exactly this), PAGE_BENCH_INFLIGHT at a time (default 8), on a
 * fresh database, no server. `node dist/scripts/bench/page-read.js [pages]` (default 80, after 8 to warm up);
 * PAGE_BENCH_DB=postgresql for PostgreSQL (the server of PAGE_BENCH_POSTGRESQL, default
 * postgresql://postgres@127.0.0.1:5432/postgres, gets a scratch database, dropped after).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { RunEventEnvelope } from '../../protocol/events.js';
import { createLogger } from '../../server/logger.js';
import { parseDatabaseUrl } from '../../server/store/database-target.js';
import { openStore } from '../../server/store/open-store.js';
import type { RunStore } from '../../server/store/store.js';
import { percentiles } from '../load/stats.js';
import { postgresqlDatabase, type Scratch } from './databases.js';

const EVENTS = 1000;
const EVENT_TEXT = 64 * 1024;
const PAGE_MAX_BYTES = 1024 * 1024;

const envelope = (seq: number, payload: unknown, at: string): RunEventEnvelope =>
  ({ type: seq === 1 ? 'message_received' : 'partial_result', event_id: `bench-${seq}`, seq, run_id: 'bench', thread_id: 'bench-t', user_id: 'bench-u', agent_name: 'a', timestamp: at, payload }) as RunEventEnvelope;

async function fill(store: RunStore): Promise<void> {
  const at = new Date().toISOString();
  await store.acceptRun({ id: 'bench', userId: 'bench-u', threadId: null, newThreadId: 'bench-t', agentName: 'a', input: { text: 'page' }, correlationId: null, requestId: 'bench', firstEvent: envelope(1, {}, at) as never, correlationSince: 0 });
  for (let from = 2; from <= EVENTS; from += 100) {
    const seqs = Array.from({ length: Math.min(100, EVENTS + 1 - from) }, (_, i) => from + i);
    await store.appendEvents(seqs.map((seq) => envelope(seq, { text: 'e'.repeat(EVENT_TEXT) }, at)));
  }
}

/** `pages` reads, `inflight` at a time: each one's time in ms. */
async function readPages(store: RunStore, pages: number, inflight: number): Promise<number[]> {
  const run = await store.findRun('bench-u', 'bench');
  if (!run) throw new Error('the bench run is missing');
  const times: number[] = [];
  let next = 0;
  const reader = async () => {
    while (next++ < pages) {
      const t0 = performance.now();
      const events = await store.listEvents(run, 0, EVENTS, PAGE_MAX_BYTES);
      times.push(performance.now() - t0);
      if (events.length !== 17) throw new Error(`a page of ${events.length} events, 17 expected`);
    }
  };
  await Promise.all(Array.from({ length: inflight }, reader));
  return times;
}

async function scratchOf(kind: string, dir: string): Promise<Scratch & { url: string }> {
  if (kind === 'sqlite') return { env: {}, url: `file:${path.join(dir, 'bench.db')}`, drop: async () => undefined };
  const scratch = await postgresqlDatabase(process.env.PAGE_BENCH_POSTGRESQL ?? 'postgresql://postgres@127.0.0.1:5432/postgres').scratch();
  return { ...scratch, url: scratch.env.DATABASE_URL! };
}

async function main(): Promise<void> {
  const kind = process.env.PAGE_BENCH_DB ?? 'sqlite';
  const pages = Number(process.argv[2] ?? 80);
  const inflight = Number(process.env.PAGE_BENCH_INFLIGHT ?? 8);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-page-bench-'));
  const scratch = await scratchOf(kind, dir);
  try {
    const backend = openStore(parseDatabaseUrl(scratch.url, dir), { synchronous: 'normal', poolSize: 4, startupWaitMs: 10_000, log: createLogger('silent') });
    await backend.migrate();
    const connection = await backend.connect();
    try {
      await fill(connection.store);
      await readPages(connection.store, inflight, inflight);
      const p = percentiles(await readPages(connection.store, pages, inflight));
      console.log(JSON.stringify({ database: kind, pages, inflight, events: EVENTS, event_bytes: EVENT_TEXT, ms: { p50: p.p50, p95: p.p95, max: p.max } }));
    } finally {
      await connection.close();
    }
  } finally {
    await scratch.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

/**
 * One run's ctx.db cannot make the front do unbounded work for it (helper-61's attack). Agent code fills its own
 * thread with answers of ~1 MB (8 ordinary runs), then fires 60 concurrent `ctx.db.messages.list({limit: 100})`:
 * the gate took them all at once and the front read ~0.5 GB for them together (another user's /healthz waited
 * 3.4 s, the front's RSS grew 163 → 1,064 MiB; at 150 calls 2.4 GiB). Now a run's statements run one at a time,
 * 256 at most wait, the rest are refused `too_many_waiting`, a run's answers are paced
 * (server/store/gate-admission.ts), and one answer holds at most MAX_ANSWER_BYTES of messages, at least one
 * (worker-query-gate.ts: the page's LIMIT is lowered to the rows whose stored sizes fit). Timings are printed, not
 * judged: memory, answer sizes and refusals are.
 */
import fs from 'node:fs';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, httpCall, metricValue, terminal } from './helpers/client';

const HOG = `
export default class DbHog {
  static agentName = 'db-hog';
  async execute(ctx) {
    if (ctx.input.mode === 'fill') return 'x'.repeat(1_000_000);
    // Reads of the whole thread, then cheap calls past what may wait.
    let answered = 0;
    let biggest = 0;
    const failed = {};
    const refused = (err) => { const why = /refused \\((\\w+)\\)/.exec(String(err && err.message))?.[1] ?? 'other'; failed[why] = (failed[why] ?? 0) + 1; };
    // The test stops the front meanwhile (see there).
    ctx.emit('agent_thinking', { reasoning: 'about to flood' });
    await new Promise((resolve) => setTimeout(resolve, ctx.input.waitMs));
    await Promise.all([
      ...Array.from({ length: ctx.input.big }, () =>
        ctx.db.messages.list({ limit: 100 }).then((rows) => { answered++; biggest = Math.max(biggest, rows.reduce((sum, r) => sum + r.content.length, 0)); }, refused)),
      ...Array.from({ length: ctx.input.small }, (_, i) => ctx.db.threads.get('no-such-thread-' + i).then(() => { answered++; }, refused)),
    ]);
    // A page after the last id of the first: the cursor still pages through the whole thread.
    const first = await ctx.db.messages.list({ limit: 100 });
    const next = await ctx.db.messages.list({ limit: 100, afterId: first[first.length - 1].id });
    return { answered, biggest, failed, first: first.length, next: next.length };
  }
}
`;

const childrenOf = (pid: number): number[] => fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
const cpuTicks = (pid: number): number => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
};
/** Waits (at least `minMs`, at most `maxMs`) until the processes used no CPU for a second. */
async function cpuQuiet(pids: number[], minMs: number, maxMs: number): Promise<void> {
  const start = Date.now();
  const total = () => pids.reduce((n, p) => n + cpuTicks(p), 0);
  let last = total();
  let quietSince = Date.now();
  while (Date.now() - start < maxMs) {
    await new Promise((r) => setTimeout(r, 100));
    const now = total();
    if (now !== last) [last, quietSince] = [now, Date.now()];
    else if (Date.now() - quietSince >= 1000 && Date.now() - start >= minMs) return;
  }
}

const rssMiB = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ AGENTS_DIR: agentsDirWith({ 'db-hog.mjs': HOG }), RUN_TIMEOUT_MS: '60000', CELLS: '1', THREADS_PER_CELL: '2' });
}, 90_000);
afterAll(async () => {
  await server?.stop();
});

test('60 concurrent ctx.db reads of a thread of 8 MB and 400 other calls: one at a time, 256 waiting, the rest refused, each answer 1 MiB at most; the front neither balloons nor stops answering', async () => {
  const attacker = await UserClient.connect(server.url, 'hog-user');
  try {
    const first = await attacker.start({ agent: 'db-hog', input: { mode: 'fill' } });
    expect(terminal(await attacker.waitForRun(first.run_id)).payload.status).toBe('completed');
    for (let i = 0; i < 7; i++) {
      const r = await attacker.start({ agent: 'db-hog', input: { mode: 'fill' }, thread_id: first.thread_id });
      expect(terminal(await attacker.waitForRun(r.run_id)).payload.status).toBe('completed');
    }

    const pid = server.proc.pid!;
    const rssBefore = rssMiB(pid);
    const metricsBefore = (await httpCall(server.url, 'GET', '/metrics')).body as string;
    const { run_id } = await attacker.start({ agent: 'db-hog', input: { mode: 'flood', big: 60, small: 400, waitMs: 1000 }, thread_id: first.thread_id });
    // The front stopped while the run sends its calls: they all reach it together, as they would from a faster run or
    // a slower front. Otherwise how many ever wait at once depends on the two sides' speeds: on a busy machine the
    // front kept up with the run's query compiler and refused none.
    // Stopped until its cell is quiet (its worker has sent them all: each is compiled by the worker's query compiler
    // first, ~1-8 ms each, and a fixed 4 s was too short on a machine under a load of 15).
    await attacker.waitForEvent(run_id, 'agent_thinking', 60_000);
    process.kill(pid, 'SIGSTOP');
    try {
      await cpuQuiet(childrenOf(pid), 4000, 30_000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Another user's probe of the front while the flood runs: it must keep answering (its time is printed).
    let worstMs = 0;
    let peakRss = rssBefore;
    let ended = false;
    const done = attacker.waitForRun(run_id, 120_000).finally(() => (ended = true));
    while (!ended) {
      const t0 = Date.now();
      expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
      worstMs = Math.max(worstMs, Date.now() - t0);
      peakRss = Math.max(peakRss, rssMiB(pid));
      await new Promise((r) => setTimeout(r, 50));
    }
    const final = terminal(await done);
    const metricsAfter = (await httpCall(server.url, 'GET', '/metrics')).body as string;
    const refusedDelta = metricValue(metricsAfter, 'atoll_db_queries_refused_total', { reason: 'too_many_waiting' }) - metricValue(metricsBefore, 'atoll_db_queries_refused_total', { reason: 'too_many_waiting' });
    process.stdout.write(`db-gate flood: ${JSON.stringify({ status: final.payload.status, result: final.payload.final_response, worstHealthzMs: worstMs, rssBeforeMiB: Math.round(rssBefore), peakRssMiB: Math.round(peakRss) })}\n`);

    expect(final.payload.status).toBe('completed');
    const { answered, biggest, failed, first: firstPage, next } = final.payload.final_response;
    // At most the one executing and 256 waiting at any moment: of 460 sent together, some were refused at once
    // (how many depends on how fast the first ones were answered), and nothing else went wrong.
    expect(Object.keys(failed)).toEqual(['too_many_waiting']);
    expect(failed.too_many_waiting).toBeGreaterThan(0);
    expect(answered + failed.too_many_waiting).toBe(460);
    expect(refusedDelta).toBe(failed.too_many_waiting);
    // One answer: a user message and a 1 MB answer fit in 1 MiB, the next 1 MB answer does not (of 16 rows).
    expect(biggest).toBeGreaterThan(1_000_000);
    expect(biggest).toBeLessThanOrEqual(1024 * 1024);
    expect(firstPage).toBe(3);
    expect(next).toBe(2);
    expect(peakRss - rssBefore).toBeLessThan(200);
    // The run's report names the wall, and the refusal was logged once for the run, not 43 times.
    const report = (await attacker.http('GET', `/v1/runs/${run_id}`)).body;
    expect(report.isolation.refused).toContain('db:too_many_waiting');
    expect(server.logs.filter((l) => l.msg === 'thread db query refused' && l.run_id === run_id)).toHaveLength(1);
  } finally {
    attacker.close();
  }
}, 240_000);

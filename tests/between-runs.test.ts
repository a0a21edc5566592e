/**
 * Nothing of a run acts after it ends. The handle count at a run's end lets a one-shot timer of at most a second go
 * (fetch's own tick outlives an aborted request so), and through it, or through an interval whose destroy it forged,
 * a run went on acting in its worker's later runs: same user by default, anyone's with THREAD_REUSE=any (helper-76).
 * The worker watches between runs (workers/worker/handle-tracker.ts, leftBehind()) and refuses the next run if
 * anything acted: the run goes to a fresh worker. Each agent counts, in module state (one per worker), what its
 * leftover did; the next run reports it. Without the watch that run is served by the same worker and sees it acted.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, httpCall, metricValue, terminal } from './helpers/client';

const AGENTS = {
  'late-timers.mjs': `
import { AsyncResource } from 'node:async_hooks';
// Module state: the module is loaded once per worker.
let armed = false;
let acted = 0;
const act = () => acted++;
/** Emits a destroy for the timer's id, as the handle count would hear Node's own (helper-73's trick). */
function forgeDestroy(timer) {
  const idOf = (o, name) => o[Object.getOwnPropertySymbols(o).find((s) => String(s) === name)];
  const sym = Object.getOwnPropertySymbols(new AsyncResource('x')).find((s) => String(s) === 'Symbol(async_id_symbol)');
  AsyncResource.prototype.emitDestroy.call({ [sym]: idOf(timer, 'Symbol(asyncId)') });
}
export default class LateTimers {
  static agentName = 'late_timers';
  async execute(ctx) {
    const seen = { sameWorker: armed, acted };
    armed = true;
    switch (ctx.input.mode) {
      case 'interval_armed_late':
        // Under a second, one-shot: the count lets it go; its callback arms an interval after the run.
        setTimeout(() => setInterval(act, 100).unref(), 300).unref();
        break;
      case 'self_refresh': {
        const t = setTimeout(() => (act(), t.refresh()), 300).unref();
        break;
      }
      case 'short_once':
        // What fetch's own tick does: fires once after the run, and is over.
        setTimeout(act, 300).unref();
        break;
      case 'forged_destroy': {
        const t = setInterval(act, 100).unref();
        t._destroyed = true;
        forgeDestroy(t);
        break;
      }
      case 'forged_id': {
        // The same, and its async id rewritten (a property like any other: helper-79).
        const t = setInterval(act, 100).unref();
        t._destroyed = true;
        forgeDestroy(t);
        t[Object.getOwnPropertySymbols(t).find((s) => String(s) === 'Symbol(asyncId)')] = 1;
        break;
      }
      case 'chain': {
        // Each link under a second, arming the next: with runs close behind each other, links fired inside them.
        const link = () => setTimeout(() => (act(), link()), 300).unref();
        link();
        break;
      }
    }
    // What acted while this run was running, if it runs a while.
    if (ctx.input.runMs) {
      await new Promise((resolve) => setTimeout(resolve, ctx.input.runMs));
      seen.actedWhileRunning = acted - seen.acted;
    }
    return seen;
  }
}
`,
};

describe('nothing of a run acts after it ends', () => {
  let agentsDir: string;
  let server: TestServer | null = null;
  beforeAll(() => {
    agentsDir = agentsDirWith(AGENTS);
  });
  afterEach(async () => {
    await server?.stop();
    server = null;
  });

  /** One thread: the user's next run goes to the worker that served its last, unless that worker refuses it. */
  async function asMallory(body: (mallory: UserClient) => Promise<void>): Promise<void> {
    server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '1', WARM_SPARE_THREADS: '0' });
    const mallory = await UserClient.connect(server.url, 'mallory');
    try {
      await body(mallory);
    } finally {
      mallory.close();
    }
  }

  test.each([
    ['interval_armed_late', /^Timeout created between runs$/],
    ['self_refresh', /^a timer the count let go (fired again|was rescheduled) between runs$/],
    ['forged_destroy', /^a timer the count did not hold fired between runs$/],
    ['forged_id', /^a timer the count did not hold fired between runs$/],
  ])('%s: the next run is refused by that worker and served by a fresh one', async (mode, why) => {
    await asMallory(async (mallory) => {
      const first = await mallory.start({ agent: 'late_timers', input: { mode } });
      expect(terminal(await mallory.waitForRun(first.run_id, 60_000)).payload).toMatchObject({ status: 'completed', final_response: { sameWorker: false, acted: 0 } });
      // Nothing left at the run's end as the count sees it: these leftovers are made to pass it.
      expect((await mallory.http('GET', `/v1/runs/${first.run_id}`)).body.isolation).toMatchObject({ recycled: null, leaks: {} });
      // Long enough for each leftover to act several times.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const metrics = async () => (await httpCall(server!.url, 'GET', '/metrics')).body as string;
      const recycles = metricValue(await metrics(), 'atoll_worker_recycles_total', { reason: 'leaked_resources' }) || 0;
      const second = await mallory.start({ agent: 'late_timers', input: {} });
      expect(terminal(await mallory.waitForRun(second.run_id, 60_000)).payload).toMatchObject({ status: 'completed', final_response: { sameWorker: false, acted: 0 } });
      expect((await mallory.http('GET', `/v1/runs/${second.run_id}`)).body.isolation).toMatchObject({ recycled: null });
      const reasons = server!.logs.filter((l) => l.left_behind).map((l) => String(l.left_behind));
      expect(reasons).toEqual([expect.stringMatching(why)]);
      expect((metricValue(await metrics(), 'atoll_worker_recycles_total', { reason: 'leaked_resources' }) || 0) - recycles).toBe(1);
    });
  });

  test("a chain of short timers never acts inside the user's next runs, even right behind each other", async () => {
    await asMallory(async (mallory) => {
      const first = await mallory.start({ agent: 'late_timers', input: { mode: 'chain' } });
      expect(terminal(await mallory.waitForRun(first.run_id, 60_000)).payload).toMatchObject({ status: 'completed' });
      for (let i = 0; i < 3; i++) {
        const next = await mallory.start({ agent: 'late_timers', input: { runMs: 700 } });
        expect(terminal(await mallory.waitForRun(next.run_id, 60_000)).payload).toMatchObject({ status: 'completed', final_response: { actedWhileRunning: 0 } });
      }
      // The worker that served the first run waited for its link to fire, saw it arm the next, and refused its next run.
      expect(server!.logs.filter((l) => l.left_behind).map((l) => l.left_behind)).toContain('Timeout created between runs');
    });
  });

  test('a run whose short timer fires once after it ends leaves its worker serving', async () => {
    await asMallory(async (mallory) => {
      const first = await mallory.start({ agent: 'late_timers', input: { mode: 'short_once' } });
      expect(terminal(await mallory.waitForRun(first.run_id, 60_000)).payload).toMatchObject({ status: 'completed', final_response: { sameWorker: false } });
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const second = await mallory.start({ agent: 'late_timers', input: {} });
      // It fired once, between the runs (what the watch allows), and the worker serves on.
      expect(terminal(await mallory.waitForRun(second.run_id, 60_000)).payload).toMatchObject({ status: 'completed', final_response: { sameWorker: true, acted: 1 } });
      expect(server!.logs.filter((l) => l.left_behind)).toEqual([]);
    });
  });
});

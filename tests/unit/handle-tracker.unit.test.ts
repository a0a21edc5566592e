/**
 * The handle tracker (workers/worker/handle-tracker.ts) takes a destroy only for a native handle whose wrap is freed,
 * or a timer Node marked destroyed: agent code can emit destroy for any id (helper-73 hid its sockets so, and its
 * worker was kept). Without the check the forged destroys below empty the count.
 */
import { createHook, executionAsyncResource } from 'node:async_hooks';
import { AsyncResource } from 'node:async_hooks';
import dgram from 'node:dgram';
import dns from 'node:dns';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHandleTracker } from '../../workers/worker/handle-tracker';
import { socketHandles } from '../../workers/worker/socket-handles';

/** Emits async_hooks' destroy for every id so far, as agent code can. */
function forgeDestroys(): void {
  const probe = new AsyncResource('probe');
  const idSymbol = Object.getOwnPropertySymbols(probe).find((s) => String(s) === 'Symbol(async_id_symbol)')!;
  for (let id = 1; id < probe.asyncId(); id++) AsyncResource.prototype.emitDestroy.call({ [idSymbol]: id } as unknown as AsyncResource);
}

const turn = () => new Promise((resolve) => setTimeout(resolve, 20));

test('a destroy emitted for a handle still open leaves it counted; closing it ends the count', async () => {
  const { getAsyncId } = socketHandles({ net, dgram, dns });
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => accepted.push(s.on('error', () => undefined)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const tracker = createHandleTracker({ createHook, executionAsyncResource }, getAsyncId);
  tracker.start();
  try {
    // Both ends are this process's: the accepted socket counts too.
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.unref();
    const watcher = fs.watch(os.tmpdir());
    const timer = setInterval(() => undefined, 60_000);
    const before = tracker.open();
    forgeDestroys();
    await turn();
    const forged = tracker.open();
    socket.destroy();
    for (const s of accepted) s.destroy();
    watcher.close();
    clearInterval(timer);
    await turn();
    expect({ before, forged, closed: tracker.open() }).toEqual({ before: { socket: 2, file: 1, timer: 1 }, forged: { socket: 2, file: 1, timer: 1 }, closed: {} });
  } finally {
    tracker.stop();
    server.close();
  }
});

test("an init emitted again for a live id (asyncReset with that id) does not replace the handle the count watches", async () => {
  const { getAsyncId } = socketHandles({ net, dgram, dns });
  const tracker = createHandleTracker({ createHook, executionAsyncResource }, getAsyncId);
  tracker.start();
  const watcher = fs.watch(os.tmpdir());
  watcher.unref();
  try {
    const handle = (watcher as unknown as { _handle: { getAsyncId(): number; asyncReset(resource: object, id: number): void } })._handle;
    handle.asyncReset({}, handle.getAsyncId());
    forgeDestroys();
    await turn();
    expect(tracker.open()).toEqual({ file: 1 });
  } finally {
    watcher.close();
    tracker.stop();
  }
});

test('a keep-alive socket reused for a second request (a new async id) and then closed is no leak; left open, it is one', async () => {
  const { getAsyncId } = socketHandles({ net, dgram, dns });
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`;
  const tracker = createHandleTracker({ createHook, executionAsyncResource }, getAsyncId);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () => new Promise<void>((resolve, reject) => http.get(url, { agent }, (res) => res.resume().on('end', resolve)).on('error', reject));
  tracker.start();
  try {
    await get();
    await get();
    const reused = agent.freeSockets[Object.keys(agent.freeSockets)[0]!]?.length ?? 0;
    const open = tracker.open().socket ?? 0;
    agent.destroy();
    server.closeAllConnections();
    await turn();
    // One socket, reused (the server's accepted one counts too while open). Node 24's http leaves a timer of its own.
    expect({ reused, open: open >= 1, closed: tracker.open().socket ?? 0 }).toEqual({ reused: 1, open: true, closed: 0 });
  } finally {
    tracker.stop();
    server.close();
  }
});

/**
 * Between runs (between() .. leftBehind()), code of the last run must not act: the count lets a one-shot timer of at
 * most a second go at the run's end (fetch's own tick), and through it, or through a timer hidden from the count,
 * a run acted in the worker's later runs (helper-76). Each case below is the last run's doing; leftBehind() names it.
 * Each runs in a child process of its own, where nothing else makes timers (jest's reporter does, here), as in a worker
 * between runs.
 */
describe('between runs', () => {
  const TRACKER = path.join(__dirname, '../../workers/worker/handle-tracker.js');
  const SOCKETS = path.join(__dirname, '../../workers/worker/socket-handles.js');
  /**
   * A run (start .. between) that runs `run` and lasts `runMs` (20), then `gapMs` between runs, then leftBehind(), printed with `result()`'s
   * value. `clockStepMs`: the tracker's clock moves by that much at each reading (default: the real one).
   */
  /** `until`: an expression the run's end also waits for (what the run does in its time, on a machine too busy to do it in `runMs`). */
  function afterRun(run: string, gapMs: number, opts: { result?: string; clockStepMs?: number; runMs?: number; until?: string } = {}): { why: string | null; result?: unknown } {
    const code = `
      const hooks = require('node:async_hooks');
      const { AsyncResource } = hooks;
      const { createHandleTracker } = require(${JSON.stringify(TRACKER)});
      const { socketHandles } = require(${JSON.stringify(SOCKETS)});
      const { getAsyncId } = socketHandles({ net: require('node:net'), dgram: require('node:dgram'), dns: require('node:dns') });
      let clock = 0;
      const tracker = createHandleTracker(hooks, getAsyncId, ${opts.clockStepMs ? `() => (clock += ${opts.clockStepMs})` : 'Date.now'});
      // Waits without a timer or an immediate of its own: between runs nothing but the run's leftovers may make one.
      const sleep = (ms) => Atomics.waitAsync(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms).value;
      // Keeps the process up (an unref'd timer does not); made before the tracker starts, never fires.
      const up = setInterval(() => undefined, 1e9);
      (async () => {
        tracker.start();
        ${run};
        await sleep(${opts.runMs ?? 20});
        ${opts.until ? `while (!(${opts.until})) await sleep(5);` : ''}
        const openAtEnd = tracker.open();
        tracker.between();
        // As the worker does: it takes no other run before the timers the count let go have fired.
        await tracker.settled();
        await sleep(${gapMs});
        const why = tracker.leftBehind();
        tracker.stop();
        process.stdout.write(JSON.stringify({ why, result: ${opts.result ?? 'undefined'} }));
        process.exit(0);
      })();
    `;
    const child = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
    if (child.status !== 0) throw new Error(child.stderr);
    return JSON.parse(child.stdout);
  }

  test('a run whose timers ended, or whose short timer fires once after it, left nothing behind', () => {
    expect(afterRun('setTimeout(() => undefined, 1).unref()', 50)).toEqual({ why: null });
    expect(afterRun('globalThis.fired = 0; setTimeout(() => fired++, 300).unref()', 600, { result: 'fired' })).toEqual({ why: null, result: 1 });
    // Not fired yet at the run's end: the worker waits for it before its next run.
    expect(afterRun('globalThis.fired = 0; setTimeout(() => fired++, 900).unref()', 10, { result: 'fired' })).toEqual({ why: null, result: 1 });
  });

  test("a short timer's callback arming an interval, or opening a socket, between runs", () => {
    expect(afterRun('setTimeout(() => setInterval(() => undefined, 60000).unref(), 100).unref()', 300)).toEqual({ why: 'Timeout created between runs' });
    const connect = "setTimeout(() => require('node:net').connect(9, '127.0.0.1').on('error', () => undefined).unref(), 100).unref()";
    expect(afterRun(connect, 300)).toEqual({ why: 'TCPWRAP created between runs' });
    // One port arrives between runs with the next task; a MessageChannel's are the run's.
    expect(afterRun("setTimeout(() => new (require('node:worker_threads').MessageChannel)(), 100).unref()", 300)).toEqual({ why: 'MESSAGEPORT created between runs' });
  });

  test('a short timer that refresh()es itself, and one that puts its time back to fire again', () => {
    const refreshing = 'let n = 0; const t = setTimeout(() => n++ < 3 && t.refresh(), 100).unref()';
    expect(afterRun(refreshing, 150)).toEqual({ why: 'a timer the count let go fired again between runs' });
    expect(afterRun(refreshing, 0)).toEqual({ why: 'a timer the count let go is still scheduled after its time' });
    // A chain: each link arms the next (helper-79: with the next run close behind, the links fired inside it).
    const chain = 'const link = () => setTimeout(link, 300).unref(); link()';
    expect(afterRun(chain, 0)).toEqual({ why: 'Timeout created between runs' });
    const putBack = 'let n = 0; const t = setTimeout(() => { if (n++ > 3) return; const start = t._idleStart; t.refresh(); t._idleStart = start; }, 100).unref()';
    expect(afterRun(putBack, 350)).toEqual({ why: 'a timer the count let go fired again between runs' });
  });

  test('a short timer still scheduled past its time', () => {
    expect(afterRun('setTimeout(() => undefined, 900).unref()', 10, { clockStepMs: 2500 })).toEqual({ why: 'a timer the count let go is still scheduled after its time' });
  });

  test('a timer revived by refresh() after it fired is held again; an interval whose destroy was forged fires between runs', () => {
    // Fired (Node marks it destroyed and emits its destroy), then rescheduled: Node gives it a new id, so the count
    // holds it again: a leak at the run's end.
    const revivedLong = 'const t = setTimeout(() => undefined, 1).unref(); setTimeout(() => { t._idleTimeout = 5000; t.refresh(); globalThis.revived = true; }, 10).unref()';
    expect(afterRun(revivedLong, 10, { result: 'openAtEnd', runMs: 100, until: 'globalThis.revived' })).toEqual({ why: null, result: { timer: 1 } });
    // As forgeDestroys() above: an object carrying the timer's id under AsyncResource's symbol.
    const forged = `const t = setInterval(() => undefined, 100).unref(); t._destroyed = true;
      const idOf = (o, name) => o[Object.getOwnPropertySymbols(o).find((s) => String(s) === name)];
      const sym = Object.getOwnPropertySymbols(new AsyncResource('x')).find((s) => String(s) === 'Symbol(async_id_symbol)');
      AsyncResource.prototype.emitDestroy.call({ [sym]: idOf(t, 'Symbol(asyncId)') })`;
    expect(afterRun(forged, 300)).toEqual({ why: 'a timer the count did not hold fired between runs' });
    // Its async id rewritten too (ids are properties agent code can write: helper-79 hid an interval so).
    expect(afterRun(`${forged}; t[Object.getOwnPropertySymbols(t).find((s) => String(s) === 'Symbol(asyncId)')] = 1`, 300)).toEqual({ why: 'a timer the count did not hold fired between runs' });
  });

  test('an immediate chain running on after the run', () => {
    expect(afterRun('const spin = () => setImmediate(spin); spin()', 30)).toEqual({ why: 'an immediate ran between runs' });
  });
});

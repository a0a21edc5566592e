/**
 * `AsyncResource`'s `emitDestroy` on an object without a numeric async id fails a CHECK in Node 20's destroy queue,
 * which aborts the process: one line of agent code ended its whole cell (helper-74; Node 22 and 24 no longer abort).
 * The async_hooks guard (workers/worker/async-hooks-guards.ts) refuses it with a TypeError on every version. Run in
 * a child process: the abort would end the test runner.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const GUARDS = path.join(__dirname, '../../workers/worker/async-hooks-guards.js');

function emitDestroyOn(target: string, guarded: boolean) {
  const code = `
    const hooks = require('node:async_hooks');
    if (${guarded}) require(${JSON.stringify(GUARDS)}).guardAsyncHooks();
    // A destroy hook is on while a run executes (the handle tracker's).
    hooks.createHook({ destroy() {} }).enable();
    const { AsyncResource } = hooks;
    let out;
    try {
      AsyncResource.prototype.emitDestroy.call(${target});
      out = 'emitted';
    } catch (err) {
      out = err.name;
    }
    // A resource's own destroy still goes through.
    new AsyncResource('own').emitDestroy();
    console.log(out);
  `;
  const result = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  return { out: result.stdout.trim(), signal: result.signal };
}

test("emitDestroy on an object without an async id of its own is refused instead of aborting the process", () => {
  const ownGetter = `Object.defineProperty({}, Object.getOwnPropertySymbols(new (require('node:async_hooks').AsyncResource)('x')).find((s) => s.description === 'async_id_symbol'), { get: () => 1 })`;
  for (const target of ['{}', 'new Proxy({}, {})', ownGetter]) expect({ target, ...emitDestroyOn(target, true) }).toEqual({ target, out: 'TypeError', signal: null });
  // Without the guard Node 20 aborts; later versions emit.
  const unguarded = Number(process.versions.node.split('.')[0]) === 20 ? { out: '', signal: 'SIGABRT' } : { out: 'emitted', signal: null };
  expect(emitDestroyOn('{}', false)).toEqual(unguarded);
});

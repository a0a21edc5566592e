/**
 * A run that ends cleanly can still kill its cell later, from a callback that outlives it (an `Atomics.waitAsync`
 * holds no handle the isolation check sees, and its worker is kept, idle, for its user's next run). Found by an
 * attacker's-eye review (helper-69): the one run then inside, another user's, was named the culprit, failed, and
 * its user was put in quarantine; the killer was never suspected. A user with a worker in the dead cell is now a
 * suspect too, so the run inside is not named on being alone: it runs again, and completes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, httpCall, metricValue, terminal } from './helpers/client';

const AGENTS = {
  'late.mjs': `
import fs from 'node:fs';
export default class LateKiller {
  static agentName = 'late_killer';
  async execute(ctx) {
    // ctx.input.go: a file the test writes once the other user's run has started.
    const go = ctx.input.go;
    const cell = new Int32Array(new SharedArrayBuffer(4));
    const poll = () => Atomics.waitAsync(cell, 0, 0, 50).value.then(() => {
      if (!fs.existsSync(go)) return poll();
      const keep = [];
      for (let i = 0; i < 6; i++) keep.push(Buffer.alloc(64 << 20, 1));
      globalThis.kept = keep;
    });
    poll();
    return fs.existsSync(go) ? 'go already there' : 'done';
  }
}
`,
  'victim.mjs': `
import fs from 'node:fs';
export default class Victim {
  static agentName = 'victim';
  async execute(ctx) {
    // Run again after the cell's death (the file is there by then): done at once. The first time, held until the
    // cell dies, however slowly the killer's callback gets the CPU on a busy machine (the governor lowers it).
    if (fs.existsSync(ctx.input.go)) return 'done';
    ctx.emit('agent_thinking', { reasoning: 'holding' });
    await new Promise((resolve) => setTimeout(resolve, 60_000));
    return 'held a minute';
  }
}
`,
};

describe('a cell killed by code a finished run left behind', () => {
  let agentsDir: string;
  let server: TestServer;
  beforeAll(() => {
    agentsDir = agentsDirWith(AGENTS);
  });
  afterAll(async () => {
    await server?.stop();
    fs.rmSync(agentsDir, { recursive: true, force: true });
  });

  test('names no culprit: the run alone inside runs again and completes, its user not in quarantine', async () => {
    server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '2', CELL_MEMORY_MB: '320', RUN_TIMEOUT_MS: '120000' });
    const [mallory, victor] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'victor')]);
    try {
      const go = path.join(agentsDir, 'go');
      const late = await mallory.start({ agent: 'late_killer', input: { go } });
      expect(terminal(await mallory.waitForRun(late.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'done' });
      const held = await victor.start({ agent: 'victim', input: { go } });
      // Once it has looked for the file and is holding (agent_started can come before its code runs).
      await victor.waitForEvent(held.run_id, 'agent_thinking', 60_000);
      fs.writeFileSync(go, '');
      const events = await victor.waitForRun(held.run_id, 180_000);
      expect(server.logs.filter((l) => l.msg === 'cell died').map((l) => l.cause)).toEqual(['memory_limit']);
      expect(events.map((e) => e.type)).toContain('run_restarted');
      expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: 'done' });
      const metrics = (await httpCall(server.url, 'GET', '/metrics')).body as string;
      expect(metricValue(metrics, 'atoll_cell_killers_quarantined_total', { evidence: 'culprit' }) || 0).toBe(0);
    } finally {
      fs.rmSync(path.join(agentsDir, 'go'), { force: true });
      mallory.close();
      victor.close();
    }
  }, 240_000);
});

/**
 * Nothing survives into another user's run: a patch of a host prototype, an unref'd server or timer, and
 * module-level state all stay with the user who left them (THREAD_LOCKDOWN, the leak check, THREAD_REUSE),
 * and a worker that is found contaminated is reported and retired.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, httpCall, metricValue, terminal } from './helpers/client';

/** Agents written for this test: an attacker that tampers with what runs share, and a plain victim. */
const AGENTS: Record<string, string> = {
  'attacker.mjs': `
import fs from 'node:fs';
import dgram from 'node:dgram';
import { MessagePort, workerData } from 'node:worker_threads';
const seen = [];
export default class Attacker {
  static agentName = 'attacker';
  async execute(ctx) {
    const mode = ctx.input.mode;
    if (mode === 'patch_port') {
      const original = MessagePort.prototype.postMessage;
      // Reads every later message of this thread and rewrites the answers.
      MessagePort.prototype.postMessage = function (msg, ...rest) {
        seen.push(msg);
        if (msg && msg.type === 'done' && msg.outcome && msg.outcome.status === 'completed') msg.outcome.result = 'pwned';
        return original.call(this, msg, ...rest);
      };
      return 'patched';
    }
    if (mode === 'unref_server') {
      await new Promise((resolve) => dgram.createSocket('udp4').bind(0, '127.0.0.1', resolve).unref());
      return 'server left behind';
    }
    if (mode === 'unref_interval') {
      setInterval(() => seen.push('tick'), 10).unref();
      return 'interval left behind';
    }
    if (mode === 'global') {
      globalThis.__attackerWasHere = ctx.userId;
      return 'global left behind';
    }
    if (mode === 'late_global') {
      // Set after this run's checks are over: a V8 timer, neither a handle nor a libuv resource.
      Atomics.waitAsync(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200).value.then(() => {
        globalThis.__attackerWasHere = ctx.userId;
        fs.writeFileSync(ctx.input.marker, 'set');
      });
      return 'armed';
    }
    if (mode === 'flip_reuse') {
      // The worker's settings arrive as workerData: turn off the refusal of other users' runs, raise the limits.
      const tried = [];
      for (const [key, write] of [['workerReuse', () => (workerData.workerReuse = 'any')], ['limits', () => (workerData.limits.maxEventsPerRun = 1e9)], ['maxRunsPerWorker', () => (workerData.maxRunsPerWorker = 1e9)]]) {
        try {
          write();
          tried.push(key + ' changed');
        } catch (err) {
          tried.push(key + ' refused');
        }
      }
      return tried.join(',') + ';' + workerData.workerReuse;
    }
    if (mode === 'remember') {
      // Module-level state: survives any freeze and any check.
      seen.push(ctx.input.text);
      return seen.join(',');
    }
    return 'nothing';
  }
}
`,
  'victim.mjs': `
export default class Victim {
  static agentName = 'victim';
  async execute(ctx) {
    return 'victim says ' + ctx.input.text;
  }
}
`,
};

function agentsDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-worker-reset-'));
  for (const [file, source] of Object.entries(AGENTS)) fs.writeFileSync(path.join(dir, file), source);
  return dir;
}

const scrape = async (s: TestServer) => (await httpCall(s.url, 'GET', '/metrics')).body as string;
/** One cell, one worker, no spare: every run of this server goes through the same worker unless it retires. */
const ONE_WORKER = { CELLS: '1', THREADS_PER_CELL: '1', WARM_SPARE_THREADS: '0' };

async function runOnce(u: UserClient, agent: string, input: Record<string, unknown>) {
  const { run_id } = await u.start({ agent, input });
  const events = await u.waitForRun(run_id);
  const view = (await u.http('GET', `/v1/runs/${run_id}`)).body;
  return { run_id, final: terminal(events).payload, view };
}

describe('defaults (THREAD_LOCKDOWN=1, THREAD_REUSE=same_user), one cell, one thread', () => {
  let server: TestServer;
  let mallory: UserClient;
  let victim: UserClient;
  beforeAll(async () => {
    server = await startServer({ AGENTS_DIR: agentsDir(), ...ONE_WORKER });
    [mallory, victim] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'victim')]);
  });
  afterAll(async () => {
    mallory?.close();
    victim?.close();
    await server?.stop();
  });

  test('a patch of MessagePort.prototype.postMessage fails inside the attacker\'s run; the next user\'s answer arrives unaltered', async () => {
    const attack = await runOnce(mallory, 'attacker', { text: 'x', mode: 'patch_port' });
    expect(attack.final).toMatchObject({ status: 'failed', error: { code: 'AGENT_ERROR' } });
    expect(attack.final.error.message).toMatch(/read.only|not extensible|Cannot assign/);
    const answer = await runOnce(victim, 'victim', { text: 'hello' });
    expect(answer.final).toMatchObject({ status: 'completed', final_response: 'victim says hello' });
    expect(answer.view.isolation).toMatchObject({ contaminated: false });
  });

  test.each([
    ['unref_server', 'socket'],
    ['unref_interval', 'timer'],
  ])('an unref\'d %s is a leak: reported, and its thread is retired', async (mode, kind) => {
    const before = await scrape(server);
    const attack = await runOnce(mallory, 'attacker', { text: 'x', mode });
    expect(attack.final.status).toBe('completed');
    expect(attack.view.isolation).toMatchObject({ leaks: { [kind]: 1 }, recycled: 'leaked_resources' });
    const after = await scrape(server);
    const delta = (name: string, labels: Record<string, string>) => metricValue(after, name, labels) - (metricValue(before, name, labels) || 0);
    expect(delta('atoll_worker_recycles_total', { reason: 'leaked_resources' })).toBe(1);
    const answer = await runOnce(victim, 'victim', { text: mode });
    expect(answer.final).toMatchObject({ status: 'completed', final_response: `victim says ${mode}` });
    expect(answer.view.isolation).toMatchObject({ leaks: {}, contaminated: false });
  });

  test('a run cannot change its worker\'s settings (workerData): the same-user refusal and the limits stay as the cell set them', async () => {
    const attack = await runOnce(mallory, 'attacker', { text: 'x', mode: 'flip_reuse' });
    expect(attack.final).toMatchObject({ status: 'completed', final_response: 'workerReuse refused,limits refused,maxRunsPerWorker refused;same_user' });
    const other = await runOnce(victim, 'victim', { text: 'after' });
    expect(other.final).toMatchObject({ status: 'completed', final_response: 'victim says after' });
    expect(other.view.ran_on.worker).not.toBe(attack.view.ran_on.worker);
  });

  test('module-level state never reaches another user: a thread that served one user never runs another user\'s run', async () => {
    const first = await runOnce(mallory, 'attacker', { text: 'mallory-secret', mode: 'remember' });
    expect(first.final.final_response).toBe('mallory-secret');
    // Same user, same worker: its own module state is its own business.
    const again = await runOnce(mallory, 'attacker', { text: 'again', mode: 'remember' });
    expect(again.final.final_response).toBe('mallory-secret,again');
    expect(again.view.ran_on).toEqual(first.view.ran_on);
    const other = await runOnce(victim, 'attacker', { text: 'victim-text', mode: 'remember' });
    expect(other.final).toMatchObject({ status: 'completed', final_response: 'victim-text' });
    expect(other.view.ran_on.worker).not.toBe(first.view.ran_on.worker);
    // A fresh worker or a retired one, never an attempt.
    expect(other.view.attempts).toBe(1);
  });
});

describe('THREAD_REUSE=any, THREAD_LOCKDOWN=0, one cell, one thread: contamination the check must see', () => {
  let server: TestServer;
  let mallory: UserClient;
  let victim: UserClient;
  beforeAll(async () => {
    // CELL_SANDBOX=off too: the late attacker tells the test it struck by writing a file outside its scratch folder.
    server = await startServer({ AGENTS_DIR: agentsDir(), ...ONE_WORKER, THREAD_REUSE: 'any', THREAD_LOCKDOWN: '0', CELL_SANDBOX: 'off' });
    [mallory, victim] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'victim')]);
  });
  afterAll(async () => {
    mallory?.close();
    victim?.close();
    await server?.stop();
  });

  test('a patched MessagePort.prototype is named in the attacker\'s report and its thread retired before the victim runs', async () => {
    const attack = await runOnce(mallory, 'attacker', { text: 'x', mode: 'patch_port' });
    expect(attack.view.isolation).toMatchObject({ globals: ['MessagePort.prototype.postMessage'], recycled: 'globals_changed' });
    const answer = await runOnce(victim, 'victim', { text: 'hello' });
    expect(answer.final).toMatchObject({ status: 'completed', final_response: 'victim says hello' });
  });

  test('a thread found not clean when a run starts is reported as contaminated, counted, and retired', async () => {
    const before = metricValue(await scrape(server), 'atoll_cross_request_contamination_total') || 0;
    // The attacker's run leaves a global behind only after its own checks are over.
    const markerDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-late-'));
    // Writable by the cell's own OS user (CELL_SANDBOX=off: no permission model, but still a user of its own as root).
    fs.chmodSync(markerDir, 0o777);
    const marker = path.join(markerDir, 'set');
    const attack = await runOnce(mallory, 'attacker', { text: 'x', mode: 'late_global', marker });
    expect(attack.view.isolation).toMatchObject({ globals: [], leaks: {}, recycled: null });
    expect(await eventually(() => fs.existsSync(marker))).toBe(true);
    const answer = await runOnce(victim, 'victim', { text: 'after' });
    expect(answer.final).toMatchObject({ status: 'completed', final_response: 'victim says after' });
    expect(answer.view.isolation).toMatchObject({ contaminated: true, recycled: 'contaminated' });
    expect(metricValue(await scrape(server), 'atoll_cross_request_contamination_total') - before).toBe(1);
    // The retired worker's replacement is clean.
    const next = await runOnce(victim, 'victim', { text: 'clean' });
    expect(next.view.isolation).toMatchObject({ contaminated: false, recycled: null });
  });
});

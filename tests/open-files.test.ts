/**
 * Open files are the whole cell's (RUN_OPEN_FILES, workers/worker/fd-guards.ts): a run that opens files until the
 * system refuses, and holds them, made every other run of its cell fail with EMFILE, and kept them after it ended
 * (an attacker's-eye review, helper-69). With the budget it holds at most RUN_OPEN_FILES, a run beside it opens
 * its own, and the files it left open retire its worker, which closes them. Sockets count against the same budget, the
 * DNS resolver's own included. Without the budget the same run breaks
 * its cell's own checks (they meet EMFILE, and the cell dies or fails the run), so the test can fail.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, terminal } from './helpers/client';

const AGENTS = {
  'hog.mjs': `
import fs from 'node:fs';
import path from 'node:path';
export default class FileHog {
  static agentName = 'file_hog';
  async execute(ctx) {
    const file = path.join(ctx.scratchDir, 'f');
    fs.writeFileSync(file, 'x');
    const fds = [];
    let code = null;
    // Until the system or the budget refuses, whatever the host's limit.
    while (code === null) {
      try { fds.push(fs.openSync(file, 'r')); } catch (err) { code = err.code; }
    }
    ctx.emit('agent_thinking', { reasoning: 'holding' });
    // \`grab\`: take every descriptor the cell frees meanwhile too (a /proc read of its own that was open when the
    // loop above met EMFILE): left to the cell, one free descriptor is enough for its checks to go on.
    const grab = ctx.input.grab ? setInterval(() => { try { fds.push(fs.openSync(file, 'r')); } catch {} }, 1) : null;
    await new Promise((resolve) => setTimeout(resolve, ctx.input.hold_ms));
    if (grab) clearInterval(grab);
    return { held: fds.length, code };
  }
}
`,
  'sockets.mjs': `
import net from 'node:net';
export default class SocketHog {
  static agentName = 'socket_hog';
  async execute(ctx) {
    const sockets = [];
    let code = null;
    // Until the budget refuses (the test's listener takes each), whatever the host's limit.
    while (code === null && sockets.length < 100000) {
      code = await new Promise((resolve) => {
        const socket = net.connect(ctx.input.port, '127.0.0.1');
        socket.once('connect', () => (sockets.push(socket), resolve(null)));
        socket.once('error', (err) => resolve(err.code));
      });
    }
    ctx.emit('agent_thinking', { reasoning: 'holding' });
    await new Promise((resolve) => setTimeout(resolve, ctx.input.hold_ms));
    return { held: sockets.length, code };
  }
}
`,
  'resolvers.mjs': `
import dns from 'node:dns';
export default class ResolverHog {
  static agentName = 'resolver_hog';
  async execute(ctx) {
    const resolvers = [];
    let code = null;
    // A Resolver per query to a server that never answers (the test's): each holds a socket until it times out
    // (c-ares gives up a try after about 6 s here, whatever the timeout asked: more tries outlast the run).
    while (code === null && resolvers.length < 100000) {
      const resolver = new dns.Resolver({ timeout: 60000, tries: 8 });
      resolver.setServers([ctx.input.server]);
      try {
        resolver.resolve4('hog.test', () => undefined);
        resolvers.push(resolver);
      } catch (err) {
        code = err.code;
      }
    }
    ctx.emit('agent_thinking', { reasoning: 'holding' });
    await new Promise((resolve) => setTimeout(resolve, ctx.input.hold_ms));
    return { held: resolvers.length, code };
  }
}
`,
  'hidden.mjs': `
import net from 'node:net';
import { AsyncResource } from 'node:async_hooks';
export default class HiddenSockets {
  static agentName = 'hidden_sockets';
  async execute(ctx) {
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve, reject) => {
        const socket = net.connect(ctx.input.port, '127.0.0.1');
        socket.once('connect', resolve);
        socket.once('error', reject);
        // Unref'd: not in process.getActiveResourcesInfo(), so only the handle tracker sees it.
        socket.unref();
      });
    }
    // async_hooks' destroy emitted for every id so far, as if each socket had closed (helper-73).
    const probe = new AsyncResource('probe');
    const id = Object.getOwnPropertySymbols(probe).find((s) => String(s) === 'Symbol(async_id_symbol)');
    let forged = 0;
    for (let n = 1; n < probe.asyncId(); n++) {
      try {
        AsyncResource.prototype.emitDestroy.call({ [id]: n });
        forged++;
      } catch {}
    }
    return { forged: forged > 0 };
  }
}
`,
  'late.mjs': `
import net from 'node:net';
// Module state: the module is loaded once per worker.
let armed = false;
export default class LateSockets {
  static agentName = 'late_sockets';
  async execute(ctx) {
    const sameWorker = armed;
    if (!ctx.input.arm) return { sameWorker };
    armed = true;
    const port = ctx.input.port;
    // A one-shot timer of under a second, which the run-end count lets go, opens sockets after the run (helper-76).
    setTimeout(() => {
      for (let i = 0; i < 5; i++) net.connect(port, '127.0.0.1').on('error', () => undefined).unref();
    }, 900).unref();
    return { sameWorker };
  }
}
`,
  'files.mjs': `
import fs from 'node:fs';
import path from 'node:path';
export default class FileUser {
  static agentName = 'file_user';
  static repeatable = false;
  async execute(ctx) {
    const fds = [];
    try {
      for (let i = 0; i < 64; i++) fds.push(fs.openSync(path.join(ctx.scratchDir, 'f' + i), 'w'));
      return { opened: fds.length };
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  }
}
`,
};

/** The hog holds its files (or sockets) while the other user's run opens 64 files of its own in the same cell. */
async function hogBesideUser(server: TestServer, hogAgent = 'file_hog', hogInput: Record<string, unknown> = {}) {
  const [mallory, bob] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'bob')]);
  try {
    const hog = await mallory.start({ agent: hogAgent, input: { hold_ms: 3000, ...hogInput } });
    await mallory.waitForEvent(hog.run_id, 'agent_thinking', 60_000);
    const user = await bob.start({ agent: 'file_user', input: {} });
    const userEvents = await bob.waitForRun(user.run_id, 60_000);
    const hogEvents = await mallory.waitForRun(hog.run_id, 60_000);
    // The user's run started while the hog still held its files.
    expect(Date.parse(userEvents.find((e) => e.type === 'agent_started')!.timestamp)).toBeLessThan(Date.parse(terminal(hogEvents).timestamp));
    const userFinal = terminal(userEvents).payload;
    const hogFinal = terminal(hogEvents).payload;
    const hogView = (await mallory.http('GET', `/v1/runs/${hog.run_id}`)).body;
    return { userFinal, hogFinal, hogView };
  } finally {
    mallory.close();
    bob.close();
  }
}

const descriptorsOf = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

/** Runs `fn` with a listener on an ephemeral port whose accepted sockets are `peers`; they are closed after it. */
async function withPeers(fn: (port: number, peers: Set<net.Socket>) => Promise<void>): Promise<void> {
  const peers = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    peers.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => peers.delete(socket));
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  try {
    await fn((listener.address() as net.AddressInfo).port, peers);
  } finally {
    for (const socket of peers) socket.destroy();
    listener.close();
  }
}

const ONE_CELL = { CELLS: '1', THREADS_PER_CELL: '2' };

describe('open files', () => {
  let agentsDir: string;
  let server: TestServer | null = null;
  beforeAll(() => {
    agentsDir = agentsDirWith(AGENTS);
  });
  afterEach(async () => {
    await server?.stop();
    server = null;
  });
  afterAll(() => fs.rmSync(agentsDir, { recursive: true, force: true }));

  test('a run holds at most RUN_OPEN_FILES; the run beside it opens its own; what it left open retires its worker and is closed', async () => {
    server = await startServer({ AGENTS_DIR: agentsDir, ...ONE_CELL, RUN_OPEN_FILES: '256' });
    const cellPid = server.logs.find((l) => l.msg === 'cell starting')!.pid as number;
    const before = descriptorsOf(cellPid);
    const { userFinal, hogFinal, hogView } = await hogBesideUser(server);
    expect(userFinal).toMatchObject({ status: 'completed', final_response: { opened: 64 } });
    expect(hogFinal).toMatchObject({ status: 'completed', final_response: { held: 256, code: 'EMFILE' } });
    expect(hogView.isolation).toMatchObject({ leaks: { file: 256 }, recycled: 'leaked_resources', refused: expect.arrayContaining(['open_files']) });
    expect(server.logs.filter((l) => l.msg === 'cell died')).toEqual([]);
    // The retired worker's descriptors are closed with it (a fresh one may be warming meanwhile).
    expect(await eventually(() => descriptorsOf(cellPid) < before + 40, 20_000)).toBe(true);
  });

  test('sockets count against the same budget: the run beside a socket hog opens its files', async () => {
    await withPeers(async (port, peers) => {
      server = await startServer({ AGENTS_DIR: agentsDir, ...ONE_CELL, RUN_OPEN_FILES: '256', AGENT_EGRESS_ALLOW: '127.0.0.1' });
      const { userFinal, hogFinal, hogView } = await hogBesideUser(server, 'socket_hog', { port, hold_ms: 8000 });
      expect(userFinal).toMatchObject({ status: 'completed', final_response: { opened: 64 } });
      expect(hogFinal).toMatchObject({ status: 'completed', final_response: { held: 256, code: 'EMFILE' } });
      // Sockets left open are a leak of their own kind: the worker is retired, and they close with it.
      expect(hogView.isolation).toMatchObject({ recycled: 'leaked_resources', refused: expect.arrayContaining(['open_files']) });
      expect(hogView.isolation.leaks.socket).toBeGreaterThanOrEqual(256);
      expect(server.logs.filter((l) => l.msg === 'cell died')).toEqual([]);
      expect(await eventually(() => peers.size === 0, 20_000)).toBe(true);
    });
  });

  test('sockets a run hides from the handle tracker (destroy emitted for their ids) still retire its worker', async () => {
    await withPeers(async (port, peers) => {
      server = await startServer({ AGENTS_DIR: agentsDir, ...ONE_CELL, RUN_OPEN_FILES: '256', AGENT_EGRESS_ALLOW: '127.0.0.1' });
      const mallory = await UserClient.connect(server.url, 'mallory');
      try {
        const run = await mallory.start({ agent: 'hidden_sockets', input: { port } });
        expect(terminal(await mallory.waitForRun(run.run_id, 60_000)).payload).toMatchObject({ status: 'completed', final_response: { forged: true } });
        const view = (await mallory.http('GET', `/v1/runs/${run.run_id}`)).body;
        expect(view.isolation).toMatchObject({ recycled: 'leaked_resources', leaks: { socket: 5 } });
      } finally {
        mallory.close();
      }
      // Closed with the retired worker.
      expect(await eventually(() => peers.size === 0, 20_000)).toBe(true);
    });
  });

  test("sockets a run's late callback opens between runs retire its worker before the next run starts there", async () => {
    await withPeers(async (port, peers) => {
      server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '1', WARM_SPARE_THREADS: '0', RUN_OPEN_FILES: '256', AGENT_EGRESS_ALLOW: '127.0.0.1' });
      const mallory = await UserClient.connect(server.url, 'mallory');
      try {
        const first = await mallory.start({ agent: 'late_sockets', input: { port, arm: true } });
        expect(terminal(await mallory.waitForRun(first.run_id, 60_000)).payload).toMatchObject({ status: 'completed', final_response: { sameWorker: false } });
        expect((await mallory.http('GET', `/v1/runs/${first.run_id}`)).body.isolation).toMatchObject({ recycled: null });
        expect(await eventually(() => peers.size === 5, 20_000)).toBe(true);
        // The worker that served the first run (one thread, same user) refuses the next: its sockets were opened
        // after that run ended (workers/worker/handle-tracker.ts, leftBehind()). The run goes to a fresh worker.
        const second = await mallory.start({ agent: 'late_sockets', input: { port, arm: false } });
        expect(terminal(await mallory.waitForRun(second.run_id, 60_000)).payload).toMatchObject({ status: 'completed', final_response: { sameWorker: false } });
        expect((await mallory.http('GET', `/v1/runs/${second.run_id}`)).body.isolation).toMatchObject({ recycled: null, leaks: {} });
        expect(server.logs.filter((l) => l.left_behind).map((l) => l.left_behind)).toEqual(['TCPWRAP created between runs']);
      } finally {
        mallory.close();
      }
      // Closed with the retired worker.
      expect(await eventually(() => peers.size === 0, 20_000)).toBe(true);
    });
  });

  test("the DNS resolver's sockets count against the same budget: the run beside a resolver hog opens its files", async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    try {
      server = await startServer({ AGENTS_DIR: agentsDir, ...ONE_CELL, RUN_OPEN_FILES: '256', AGENT_EGRESS_ALLOW: '127.0.0.1' });
      const cellPid = server.logs.find((l) => l.msg === 'cell starting')!.pid as number;
      const before = descriptorsOf(cellPid);
      const resolverServer = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      const { userFinal, hogFinal, hogView } = await hogBesideUser(server, 'resolver_hog', { server: resolverServer, hold_ms: 8000 });
      expect(userFinal).toMatchObject({ status: 'completed', final_response: { opened: 64 } });
      expect(hogFinal).toMatchObject({ status: 'completed', final_response: { held: 256, code: 'EMFILE' } });
      // Queries still waiting for their answer hold their sockets: a leak; the worker is retired and they close.
      expect(hogView.isolation).toMatchObject({ recycled: 'leaked_resources', refused: expect.arrayContaining(['open_files']) });
      expect(hogView.isolation.leaks.socket).toBeGreaterThanOrEqual(256);
      expect(server.logs.filter((l) => l.msg === 'cell died')).toEqual([]);
      expect(await eventually(() => descriptorsOf(cellPid) < before + 40, 20_000)).toBe(true);
    } finally {
      silent.close();
    }
  });

  test("a cell holding more descriptors than its workers may is stopped by the front; the run that does it again alone in quarantine is named", async () => {
    // A ceiling below one run's budget stands in for a way to open that the budget does not count (README, threat model).
    server = await startServer({ AGENTS_DIR: agentsDir, ...ONE_CELL, RUN_OPEN_FILES: '256', CELL_MAX_DESCRIPTORS: '150' });
    const mallory = await UserClient.connect(server.url, 'mallory');
    try {
      const hog = await mallory.start({ agent: 'file_hog', input: { hold_ms: 8000 } });
      const events = await mallory.waitForRun(hog.run_id, 60_000);
      expect(terminal(events).payload).toMatchObject({ status: 'failed', error: { code: 'LIMIT_EXCEEDED', message: expect.stringContaining('file descriptors') } });
      // Stopped in its serving cell (not named there: descriptors do not say who took them), then in quarantine.
      expect(events.filter((e) => e.type === 'run_restarted')).toHaveLength(1);
      expect(server.logs.filter((l) => l.msg === 'cell died' && l.cause === 'descriptors').length).toBe(2);
      expect(server.logs.filter((l) => String(l.msg).startsWith('cell holds more descriptors')).length).toBe(2);
    } finally {
      mallory.close();
    }
  });

  test("without the budget the same run breaks its cell's own checks (they meet EMFILE): it fails, or its cell dies", async () => {
    server = await startServer({ AGENTS_DIR: agentsDir, ...ONE_CELL, RUN_OPEN_FILES: '0' });
    const mallory = await UserClient.connect(server.url, 'mallory');
    try {
      // Held past the scratch watch's 2 s wait for descriptors (STARVED_LIMIT_MS), with room for a loaded machine.
      const hog = await mallory.start({ agent: 'file_hog', input: { hold_ms: 8000, grab: true } });
      // Whichever of the cell's own checks meets EMFILE first ends it: the memory watchdog (the cell exits:
      // WORKER_CRASHED) or the scratch watch, which cannot open the run's folder for 2 s (the cell exits:
      // LIMIT_EXCEEDED, seen under load).
      const final = terminal(await mallory.waitForRun(hog.run_id, 60_000)).payload;
      expect(final).toMatchObject({ status: 'failed', error: { code: expect.stringMatching(/^(WORKER_CRASHED|LIMIT_EXCEEDED)$/) } });
    } finally {
      mallory.close();
    }
  });
});

/**
 * The descriptor wall (workers/worker/fd-guards.ts), in a real worker thread: descriptors the process holds that
 * the thread did not open (a connected TCP socket, a UDP socket, a file)
 * cannot be read, written, wrapped or closed from it, and the same attempts succeed in a thread without the wall,
 * so each refusal is the wall's. Every descriptor-taking function of this Node's `fs` is guarded.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { GUARDED_FS_MEMBERS } from '../../workers/worker/fd-guards';

const FD_GUARDS = path.join(__dirname, '../../workers/worker/fd-guards.js');

/** Runs `code` in a fresh thread and answers its first message, once the thread has ended. */
function firstMessageOf<T = Record<string, unknown>>(code: string, workerData: unknown = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData });
    worker.once('message', (out: T) => void worker.terminate().then(() => resolve(out)));
    worker.once('error', reject);
  });
}

type Outcome = Record<string, string>;

/** What a thread given these descriptors gets when it tries each one, with or without the wall. */
function attemptsIn(thread: { walled: boolean; tcp: number; udp: number; file: number; dir: string }): Promise<Outcome> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { walled, tcp, udp, file, dir } = workerData;
    if (walled) require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined);
    const fs = require('node:fs'), net = require('node:net'), dgram = require('node:dgram'), path = require('node:path');
    const out = {};
    const attempt = async (name, fn) => {
      try { await fn(); out[name] = 'ok'; } catch (err) { out[name] = err.code || String(err); }
    };
    (async () => {
      await attempt('write_socket', () => fs.writeSync(tcp, 'from the thread'));
      await attempt('fstat_socket', () => fs.fstatSync(tcp));
      await attempt('read_file', () => fs.readSync(file, Buffer.alloc(4), 0, 4, 0));
      await attempt('read_file_whole', () => fs.readFileSync(file));
      await attempt('truncate_file', () => fs.ftruncateSync(file, 0));
      await attempt('stream_file', () => new Promise((resolve, reject) => fs.createReadStream(null, { fd: file, start: 0, autoClose: false }).on('error', reject).on('end', resolve).resume()));
      await attempt('wrap_socket', () => new net.Socket({ fd: tcp, readable: false, writable: true }).write('wrapped'));
      await attempt('bind_udp', () => new Promise((resolve, reject) => { const s = dgram.createSocket('udp4'); s.on('error', reject); s.bind({ fd: udp }, () => resolve()); }));
      // A FileHandle of its own pointed at another descriptor, an object made from its prototype, a native handle
      // made for a number (found by an attacker's-eye review), and tty's class behind a wrapper.
      const symbolOf = (o, d) => Object.getOwnPropertySymbols(o).find((s) => s.description === d);
      await attempt('filehandle_redirect', async () => {
        const handle = await fs.promises.open(path.join(dir, 'redirect'), 'w');
        handle[symbolOf(handle, 'kFd')] = tcp;
        await handle.write('through a FileHandle');
      });
      await attempt('filehandle_forged', async () => {
        const own = await fs.promises.open(path.join(dir, 'forged'), 'w');
        const forged = Object.create(Object.getPrototypeOf(own));
        for (const key of Object.getOwnPropertySymbols(own)) forged[key] = own[key];
        forged[symbolOf(own, 'kFd')] = file;
        await fs.promises.readFile(forged);
      });
      await attempt('filehandle_dressed', async () => {
        const handle = await fs.promises.open(path.join(dir, 'dressed'), 'w');
        handle[symbolOf(handle, 'kHandle')] = { fd: tcp };
        handle[symbolOf(handle, 'kFd')] = tcp;
        await handle.write('through an object dressed as a native handle');
      });
      await attempt('filehandle_native', async () => {
        const own = await fs.promises.open(path.join(dir, 'native'), 'w');
        const Native = Object.getPrototypeOf(own[symbolOf(own, 'kHandle')]).constructor;
        await new own.constructor(new Native(tcp)).write('through a native handle');
      });
      await attempt('tty_class', () => new (require('node:tty').WriteStream.prototype.constructor)(tcp).write('through tty'));
      // Its own: works either way.
      await attempt('own_file', () => { const fd = fs.openSync(path.join(dir, 'own'), 'w+'); fs.writeSync(fd, 'x'); fs.readFileSync(fd); fs.closeSync(fd); });
      await attempt('own_handle', async () => { const h = await fs.promises.open(path.join(dir, 'own-handle'), 'w+'); await h.write('x'); await h.stat(); await h.close(); await fs.promises.readFile(path.join(dir, 'own-handle')); });
      // graceful-fs (under fs-extra) copies fs's members with their descriptors and patches the copy.
      await attempt('own_graceful_fs', async () => {
        const gfs = require('graceful-fs');
        gfs.writeFileSync(path.join(dir, 'graceful'), 'x');
        await new Promise((resolve, reject) => gfs.createWriteStream(path.join(dir, 'graceful-stream')).on('error', reject).end('y', resolve));
        if (gfs.readFileSync(path.join(dir, 'graceful-stream'), 'utf8') !== 'y') throw new Error('not written');
      });
      // Only where the wall is: without it the report would land in this test's output.
      if (walled) await attempt('report_to_stdout', () => process.report.writeReport('stdout'));
      parentPort.postMessage(out);
    })();
  `;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData: thread });
    worker.once('message', (out: Outcome) => {
      resolve(out);
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

let dir: string;
let server: net.Server;
let client: net.Socket;
let accepted: net.Socket;
let udp: dgram.Socket;
let file: number;
const fdOf = (socket: net.Socket) => (socket as unknown as { _handle: { fd: number } })._handle.fd;
/** A UDP socket's descriptor, from its state (its `_handle` getter is deprecated). */
const udpFd = (socket: dgram.Socket) => {
  for (const key of Object.getOwnPropertySymbols(socket)) {
    const fd = (socket as unknown as Record<symbol, { handle?: { fd?: number } } | undefined>)[key]?.handle?.fd;
    if (typeof fd === 'number') return fd;
  }
  throw new Error('no UDP descriptor');
};

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-fd-guards-'));
  file = fs.openSync(path.join(dir, 'secret'), 'w+');
  fs.writeSync(file, 'another thread\'s file');
  server = net.createServer((socket) => (accepted = socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((resolve) => client.once('connect', resolve));
  udp = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
});
afterAll(() => {
  client?.destroy();
  accepted?.destroy();
  server?.close();
  // The unwalled thread may have taken (and closed) these already.
  try {
    udp?.close();
    fs.closeSync(file);
  } catch {
    // closed already
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a walled thread cannot use descriptors it did not open; an unwalled one could, and both use their own', async () => {
  const thread = { tcp: fdOf(client), udp: udpFd(udp), file, dir };
  // The walled thread first: the open one really takes the descriptors (its wrapped socket closes with it).
  const walled = await attemptsIn({ ...thread, walled: true });
  const open = await attemptsIn({ ...thread, walled: false });
  const names = Object.keys(open).filter((name) => !name.startsWith('own_'));
  expect(names).toHaveLength(13);
  // Each attempt works without the wall (so the test can fail)...
  for (const name of names) expect([name, open[name]]).toEqual([name, 'ok']);
  // ...and the wall refuses it.
  for (const name of names) expect([name, walled[name]]).toEqual([name, 'ERR_ACCESS_DENIED']);
  for (const name of ['own_file', 'own_handle', 'own_graceful_fs']) expect([name, open[name], walled[name]]).toEqual([name, 'ok', 'ok']);
  expect(walled.report_to_stdout).toBe('ERR_ACCESS_DENIED');
});

test('every fs function of this Node that takes a descriptor is guarded', () => {
  // Node names the parameter `fd` (descriptor only) or `path`/`file` (a path, or a descriptor for the few that take
  // both, listed in the wall); a new descriptor function in a later Node shows up here.
  const takesDescriptor = Object.entries(fs)
    .filter(([, value]) => typeof value === 'function')
    .filter(([, value]) => /^[^(]*\(\s*fd\b/.test(Function.prototype.toString.call(value)))
    .map(([name]) => name);
  expect(takesDescriptor.length).toBeGreaterThan(20);
  for (const name of takesDescriptor) expect([name, GUARDED_FS_MEMBERS.includes(name)]).toEqual([name, true]);
});

/** Opens files in a fresh thread, with the wall's open-files budget `max` (0: none), and reports what happened. */
function openFilesIn(max: number, dir: string): Promise<Record<string, unknown>> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const fs = require('node:fs'), path = require('node:path');
    let limits = 0;
    const wall = require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, undefined, { max: workerData.max, onLimit: () => limits++ });
    const file = path.join(workerData.dir, 'f');
    const codeOf = async (fn) => { try { await fn(); return 'ok'; } catch (err) { return err.code || String(err); } };
    (async () => {
      const fds = [], handles = [];
      for (let i = 0; i < 3; i++) fds.push(fs.openSync(file, 'r'));
      fds.push(await new Promise((resolve, reject) => fs.open(file, 'r', (err, fd) => (err ? reject(err) : resolve(fd)))));
      handles.push(await fs.promises.open(file, 'r'));
      // Five open: a sixth of each kind, then one after a descriptor and one after a FileHandle is closed.
      const out = {
        sync: await codeOf(() => fds.push(fs.openSync(file, 'r'))),
        callback: await codeOf(() => new Promise((resolve, reject) => fs.open(file, 'r', (err, fd) => (err ? reject(err) : resolve(fds.push(fd)))))),
        promise: await codeOf(async () => handles.push(await fs.promises.open(file, 'r'))),
        descriptors: wall.openDescriptors(),
      };
      // A handle's 'close' event, emitted by code that keeps the handle open, frees nothing; nor does a close Node
      // refuses before closing, nor an open whose callback is not the last argument (found by a review, helper-70).
      handles[0].emit('close');
      out.fake_close = await codeOf(async () => handles.push(await fs.promises.open(file, 'r')));
      out.refused_close = await codeOf(() => fs.close(fds[0], 1));
      out.after_refused_close = await codeOf(() => fds.push(fs.openSync(file, 'r')));
      out.late_callback = await codeOf(() => new Promise((resolve, reject) => fs.open(file, 'r', (err, fd) => (err ? reject(err) : resolve(fds.push(fd))), 0)));
      fs.closeSync(fds.pop());
      out.after_close = await codeOf(() => fds.push(fs.openSync(file, 'r')));
      await handles.pop().close();
      out.after_handle_close = await codeOf(async () => handles.push(await fs.promises.open(file, 'r')));
      out.limits = limits;
      parentPort.postMessage(out);
    })();
  `;
  return firstMessageOf(code, { max, dir });
}

test('a thread may hold at most its budget of open files (descriptors and FileHandles together); closing one makes room', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-open-files-'));
  try {
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    expect(await openFilesIn(5, dir)).toEqual({ sync: 'EMFILE', callback: 'EMFILE', promise: 'EMFILE', descriptors: 5, fake_close: 'EMFILE', refused_close: 'ERR_INVALID_ARG_TYPE', after_refused_close: 'EMFILE', late_callback: 'EMFILE', after_close: 'ok', after_handle_close: 'ok', limits: 6 });
    // Without a budget each of them opens (so the refusals above are the budget's).
    expect(await openFilesIn(0, dir)).toEqual({ sync: 'ok', callback: 'ok', promise: 'ok', descriptors: 8, fake_close: 'ok', refused_close: 'ERR_INVALID_ARG_TYPE', after_refused_close: 'ok', late_callback: 'ok', after_close: 'ok', after_handle_close: 'ok', limits: 0 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Opens sockets in a fresh thread with the wall's budget `max`, beside one file, and reports what happened. The
 * listener is the thread's own, made before the wall (the earlier tests' unwalled threads close descriptors of this
 * process as they end: a listener here lost its socket to them), and its accepted sockets are not the thread's opens.
 */
function openSocketsIn(max: number, file: string): Promise<Record<string, unknown>> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const fs = require('node:fs'), net = require('node:net'), dgram = require('node:dgram');
    const listener = net.createServer((s) => s.on('error', () => undefined));
    listener.listen(0, '127.0.0.1', async () => {
      const port = listener.address().port;
      let limits = 0;
      const wall = require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, undefined, { max: workerData.max, onLimit: () => limits++ });
      const connect = () => new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => resolve({ code: 'ok', socket }));
        socket.once('error', (err) => resolve({ code: err.code }));
      });
      const bindUdp = () => new Promise((resolve) => {
        const socket = dgram.createSocket('udp4');
        socket.once('listening', () => resolve({ code: 'ok', socket }));
        socket.once('error', (err) => resolve({ code: err.code }));
        socket.bind(0, '127.0.0.1');
      });
      const codeOf = (fn) => { try { fn(); return 'ok'; } catch (err) { return err.code || String(err); } };
      const fd = fs.openSync(workerData.file, 'r');
      const a = await connect(), b = await connect(), u = await bindUdp();
      const out = { a: a.code, b: b.code, udp: u.code, sockets: wall.openSockets() };
      out.tcp_over = (await connect()).code;
      out.udp_over = (await bindUdp()).code;
      out.file_over = codeOf(() => fs.closeSync(fs.openSync(workerData.file, 'r')));
      // A closed socket makes room, and so does a closed UDP socket.
      await new Promise((resolve) => { a.socket.once('close', resolve); a.socket.destroy(); });
      out.after_close = (await connect()).code;
      await new Promise((resolve) => u.socket.close(resolve));
      out.after_udp_close = (await bindUdp()).code;
      out.sockets_end = wall.openSockets();
      out.limits = limits;
      parentPort.postMessage(out);
    });
  `;
  return firstMessageOf(code, { max, file });
}

test('sockets count against the same budget as files, from their connect or bind to their close', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-open-sockets-'));
  try {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'x');
    // One file and three sockets fill a budget of four.
    expect(await openSocketsIn(4, file)).toEqual({ a: 'ok', b: 'ok', udp: 'ok', sockets: 3, tcp_over: 'EMFILE', udp_over: 'EMFILE', file_over: 'EMFILE', after_close: 'ok', after_udp_close: 'ok', sockets_end: 3, limits: 3 });
    // Without a budget each of them opens (so the refusals above are the budget's).
    expect(await openSocketsIn(0, file)).toMatchObject({ tcp_over: 'ok', udp_over: 'ok', file_over: 'ok', limits: 0 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * DNS queries to a server that never answers (a UDP socket of the thread's own, made before the wall), in a fresh
 * thread with the wall's budget `max` beside one file: the resolver's channel holds a socket of its own meanwhile.
 */
function resolverQueriesIn(max: number, file: string): Promise<Record<string, unknown>> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const fs = require('node:fs'), dgram = require('node:dgram'), dns = require('node:dns');
    const silent = dgram.createSocket('udp4');
    silent.bind(0, '127.0.0.1', async () => {
      const server = '127.0.0.1:' + silent.address().port;
      let limits = 0;
      const wall = require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, undefined, { max: workerData.max, onLimit: () => limits++ });
      const answers = [];
      const resolver = () => {
        const r = new dns.Resolver({ timeout: 60000, tries: 1 });
        r.setServers([server]);
        return r;
      };
      const ask = (r, name) => {
        try {
          r.resolve4(name, (err) => answers.push(err ? err.code : 'answered'));
          return 'ok';
        } catch (err) {
          return err.code;
        }
      };
      const fd = fs.openSync(workerData.file, 'r');
      const [r1, r2, r3, r4] = [resolver(), resolver(), resolver(), resolver()];
      // Each query counts, two on one resolver too (c-ares gives each query asked again after a timeout a socket of
      // its own).
      const out = { q1: ask(r1, 'a.test'), q2: ask(r1, 'b.test'), other: ask(r2, 'c.test'), sockets: wall.openSockets() };
      const channel = Object.getPrototypeOf(r4._handle);
      const queryA = channel.queryA;
      // A request already in a query is refused a second one (freeing the second would make the first look over).
      let inUse = null;
      channel.queryA = function (req, ...rest) {
        inUse = req;
        return queryA.call(this, req, ...rest);
      };
      try { r4.resolve4('h.test', () => undefined); } catch {}
      channel.queryA = queryA;
      try { out.reused = inUse ? String(r2._handle.queryA(inUse, 'i.test', 0)) : 'no request'; } catch (err) { out.reused = err.code; }
      out.sockets_in_use = wall.openSockets();
      r4.cancel();
      await new Promise((resolve) => setTimeout(resolve, 20));
      // A query's answer called by agent code ends nothing: its socket still counts (helper-73).
      let forged = 'none';
      channel.queryA = function (req, ...rest) {
        const result = queryA.call(this, req, ...rest);
        try { req.oncomplete(0, ['192.0.2.1'], []); forged = 'called'; } catch (err) { forged = String(err); }
        return result;
      };
      try { r4.resolve4('f.test', () => undefined); } catch {}
      channel.queryA = queryA;
      out.forged = forged;
      out.sockets_after_forged = wall.openSockets();
      // One file and four queries fill a budget of five.
      out.over = ask(r3, 'd.test');
      const promised = new dns.promises.Resolver({ timeout: 60000, tries: 1 });
      promised.setServers([server]);
      const asked = promised.resolve4('e.test').then(() => 'answered', (err) => err.code);
      out.promise_over = await Promise.race([asked, new Promise((resolve) => setTimeout(() => resolve('pending'), 50))]);
      try { fs.closeSync(fs.openSync(workerData.file, 'r')); out.file_over = 'ok'; } catch (err) { out.file_over = err.code; }
      // A cancelled query is answered (ECANCELLED), and its socket no longer counts.
      r2.cancel();
      await new Promise((resolve) => setTimeout(resolve, 20));
      out.after_cancel = ask(r3, 'g.test');
      for (const r of [r1, r2, r3, r4, promised]) r.cancel();
      await asked;
      await new Promise((resolve) => setTimeout(resolve, 20));
      out.answers = answers.sort();
      out.sockets_end = wall.openSockets();
      out.limits = limits;
      fs.closeSync(fd);
      parentPort.postMessage(out);
    });
  `;
  return firstMessageOf(code, { max, file });
}

test("the DNS resolver's own sockets count against the budget while its queries are pending", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-open-resolvers-'));
  try {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'x');
    expect(await resolverQueriesIn(5, file)).toEqual({
      q1: 'ok',
      q2: 'ok',
      other: 'ok',
      sockets: 3,
      forged: 'called',
      sockets_after_forged: 4,
      reused: 'ERR_ACCESS_DENIED',
      sockets_in_use: 4,
      over: 'EMFILE',
      promise_over: 'EMFILE',
      file_over: 'EMFILE',
      after_cancel: 'ok',
      answers: ['ECANCELLED', 'ECANCELLED', 'ECANCELLED', 'ECANCELLED'],
      sockets_end: 0,
      limits: 3,
    });
    // Without a budget each of them is asked (so the refusals above are the budget's); they still count, and a
    // forged answer leaves its query counted.
    expect(await resolverQueriesIn(0, file)).toMatchObject({ over: 'ok', promise_over: 'pending', file_over: 'ok', sockets: 3, forged: 'called', sockets_after_forged: 4, reused: 'ERR_ACCESS_DENIED', sockets_end: 0, limits: 0 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * FileHandles "closed" around the count, in a fresh thread with the wall's budget `max`: each keeps its native
 * handle (which holds the descriptor) and either sets its `kFd` to -1 before closing (the close then returns at
 * once) or is dropped and collected. Reports how many were opened before EMFILE and how many descriptors are held.
 */
function handlesAroundTheCountIn(max: number, file: string, how: 'kFd' | 'dropped'): Promise<Record<string, unknown>> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const fs = require('node:fs'), v8 = require('node:v8'), vm = require('node:vm');
    v8.setFlagsFromString('--expose-gc');
    const collect = vm.runInNewContext('gc');
    const wall = require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, undefined, { max: workerData.max, onLimit: () => undefined });
    const descriptors = () => fs.readdirSync('/proc/self/fd').length;
    const before = descriptors();
    (async () => {
      const kept = [];
      let code = 'none';
      for (let i = 0; i < 40 && code === 'none'; i++) {
        try {
          let handle = await fs.promises.open(workerData.file, 'r');
          const symbol = (name) => Object.getOwnPropertySymbols(handle).find((s) => s.description === name);
          kept.push(handle[symbol('kHandle')]);
          if (workerData.how === 'kFd') {
            handle[symbol('kFd')] = -1;
            await handle.close();
          } else {
            handle = null;
            collect();
            // The collected FileHandle's finalizer runs after a turn of the event loop.
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        } catch (err) {
          code = err.code;
        }
      }
      parentPort.postMessage({ code, kept: kept.length, held: descriptors() - before, counted: wall.openDescriptors() });
    })();
  `;
  return firstMessageOf(code, { max, file, how });
}

test("a FileHandle counts until its native handle gives its descriptor up: kFd set to -1, or the handle dropped with its native handle kept, frees nothing", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-open-handles-'));
  try {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'x');
    for (const how of ['kFd', 'dropped'] as const) {
      expect({ how, ...(await handlesAroundTheCountIn(8, file, how)) }).toEqual({ how, code: 'EMFILE', kept: 8, held: 8, counted: 8 });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a FileHandle cannot be transferred (postMessage, structuredClone), nor its native handle: the receiver would hold its descriptor uncounted', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-transfer-handles-'));
  try {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'x');
    const transfersIn = (walled: boolean) =>
      firstMessageOf(
        `
        const { workerData, parentPort, MessageChannel } = require('node:worker_threads');
        const fs = require('node:fs');
        const wall = workerData.walled ? require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, undefined, { max: 16, onLimit: () => undefined }) : null;
        (async () => {
          const out = {};
          for (const how of ['port', 'native', 'clone']) {
            const handle = await fs.promises.open(workerData.file, 'r');
            const native = handle[Object.getOwnPropertySymbols(handle).find((s) => s.description === 'kHandle')];
            const { port1, port2 } = new MessageChannel();
            try {
              if (how === 'port') port1.postMessage(handle, [handle]);
              else if (how === 'native') port1.postMessage(native, [native]);
              else structuredClone(handle, { transfer: [handle] });
              out[how] = 'sent';
            } catch (err) {
              out[how] = 'refused';
            }
            port1.close();
            port2.close();
            out[how + '_kept'] = handle.fd >= 0;
            // A handle whose native half was sent away aborts the process on close (a Node assertion): left alone.
            if (out[how] === 'refused') await handle.close();
          }
          out.counted_at_end = wall ? wall.openDescriptors() : 0;
          parentPort.postMessage(out);
        })();
      `,
        { file, walled },
      );
    expect(await transfersIn(true)).toEqual({ port: 'refused', port_kept: true, native: 'refused', native_kept: true, clone: 'refused', clone_kept: true, counted_at_end: 0 });
    // Without the wall each is sent, and the handle left behind has no descriptor.
    expect(await transfersIn(false)).toMatchObject({ port: 'sent', native: 'sent', clone: 'sent', port_kept: false });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Reads and writes by path at once, and Dirs, in a fresh thread with the wall's budget `max` (0: none). */
function pathOpensIn(max: number, dir: string): Promise<Record<string, unknown>> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const fs = require('node:fs'), path = require('node:path');
    const wall = require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, undefined, { max: workerData.max, onLimit: () => undefined });
    const { dir } = workerData;
    const file = path.join(dir, 'f');
    const codeOf = (p) => p.then(() => 'ok', (err) => err.code || String(err));
    const eight = (fn) => Promise.all(Array.from({ length: 8 }, (_, i) => codeOf(fn(i))));
    const count = (codes) => codes.filter((c) => c === 'ok').length;
    (async () => {
      const out = {};
      // Eight at once: each holds a descriptor until it is done. Reads and writes by path past the budget wait for
      // room and all complete; fs.writeFile's callback form opens through fs.open, which refuses past it.
      out.read_file = count(await eight(() => new Promise((resolve, reject) => fs.readFile(file, (err) => (err ? reject(err) : resolve())))));
      out.write_file = count(await eight((i) => new Promise((resolve, reject) => fs.writeFile(file + i, 'y', (err) => (err ? reject(err) : resolve())))));
      out.promise_read = count(await eight(() => fs.promises.readFile(file)));
      out.promise_write = count(await eight((i) => fs.promises.writeFile(file + i, 'z')));
      // With the budget held by descriptors, a read waits until one is closed.
      const held = [];
      try { while (held.length < 5) held.push(fs.openSync(file, 'r')); } catch {}
      const later = { read: 'pending', callback: 'pending' };
      fs.promises.readFile(file).then(() => (later.read = 'ok'), (err) => (later.read = err.code));
      fs.readFile(file, (err) => (later.callback = err ? err.code : 'ok'));
      await new Promise((resolve) => setTimeout(resolve, 100));
      out.while_held = { ...later };
      for (const fd of held) fs.closeSync(fd);
      await new Promise((resolve) => setTimeout(resolve, 100));
      out.after_release = { ...later };
      // Dirs are held until closed, or their iteration ends.
      const dirs = [];
      try { for (let i = 0; i < 8; i++) dirs.push(fs.opendirSync(dir)); } catch (err) { out.opendir_refused = err.code; }
      out.dirs = dirs.length;
      out.open_at_end = wall.openDescriptors();
      dirs[0].closeSync();
      await dirs[1].close();
      for await (const entry of dirs[2]) void entry;
      out.after_close = await codeOf((async () => { for (let i = 0; i < 3; i++) dirs.push(await fs.promises.opendir(dir)); })());
      out.one_more = await codeOf(new Promise((resolve, reject) => fs.opendir(dir, (err, d) => (err ? reject(err) : resolve(dirs.push(d))))));
      for (const d of dirs.slice(3)) d.closeSync();
      parentPort.postMessage(out);
    })();
  `;
  return firstMessageOf(code, { max, dir });
}

test('reads and writes by path in flight and Dirs count against the same budget (reads and writes past it wait for room); a closed or iterated Dir makes room', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-open-paths-'));
  try {
    fs.writeFileSync(path.join(dir, 'f'), 'x'.repeat(100_000));
    const waited = { while_held: { read: 'pending', callback: 'pending' }, after_release: { read: 'ok', callback: 'ok' } };
    expect(await pathOpensIn(5, dir)).toEqual({ read_file: 8, write_file: 5, promise_read: 8, promise_write: 8, ...waited, opendir_refused: 'EMFILE', dirs: 5, open_at_end: 5, after_close: 'ok', one_more: 'EMFILE' });
    const unbounded = { while_held: { read: 'ok', callback: 'ok' }, after_release: { read: 'ok', callback: 'ok' } };
    expect(await pathOpensIn(0, dir)).toEqual({ read_file: 8, write_file: 8, promise_read: 8, promise_write: 8, ...unbounded, dirs: 8, open_at_end: 8, after_close: 'ok', one_more: 'ok' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a module graph of more files than the budget loads: Node 20 reads its static imports at once, and they wait their turn', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-open-graph-'));
  try {
    for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(dir, `m${i}.mjs`), `export default ${i};`);
    fs.writeFileSync(path.join(dir, 'index.mjs'), Array.from({ length: 300 }, (_, i) => `import m${i} from './m${i}.mjs';`).join('\n') + `\nexport default m0 + m299;`);
    const loaded = await firstMessageOf<{ loaded: unknown }>(
      `
      const { workerData, parentPort } = require('node:worker_threads');
      require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, undefined, { max: 64, onLimit: () => undefined });
      import(require('node:url').pathToFileURL(workerData.index).href).then((m) => parentPort.postMessage({ loaded: m.default }), (err) => parentPort.postMessage({ loaded: err.code || String(err) }));
    `,
      { index: path.join(dir, 'index.mjs') },
    );
    expect(loaded).toEqual({ loaded: 299 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Closes that wait (helper-71): an asynchronous fs.close waited in libuv's thread pool, which a run can keep busy,
 * and was counted off at the call, so one run held thousands of descriptors within its budget; a worker retired
 * meanwhile never closed them, and they stayed the process's. A Dir's close queued behind a pending read was counted
 * off at the call too. And a file-backed Blob opens a descriptor per reader, inside Node.
 */
test('a close waiting in a busy thread pool (a descriptor, a FileHandle), or queued behind a read (a Dir), holds its place; file-backed Blobs are refused', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-open-closing-'));
  const processDescriptors = () => fs.readdirSync('/proc/self/fd').length;
  try {
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    const before = processDescriptors();
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      const fs = require('node:fs'), path = require('node:path'), crypto = require('node:crypto');
      require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, undefined, { max: 64, onLimit: () => undefined });
      const { dir } = workerData;
      const file = path.join(dir, 'f');
      const held = () => fs.readdirSync('/proc/self/fd').length;
      (async () => {
      const handles = [];
      for (let i = 0; i < 50; i++) handles.push(await fs.promises.open(file, 'r'));
      // The thread pool's four threads kept busy for a while.
      for (let i = 0; i < 4; i++) crypto.pbkdf2('x', 'y', 3e6, 64, 'sha512', () => undefined);
      const start = held();
      for (let i = 0; i < 300; i++) fs.close(fs.openSync(file, 'r'), () => undefined);
      for (const h of handles) void h.close();
      const out = { closing_held: held() - start };
      let dirs = 0;
      try {
        for (let i = 0; i < 300; i++) { const d = fs.opendirSync(dir); dirs++; d.read(() => undefined); d.close(() => undefined); }
      } catch (err) { out.dir_refused = err.code; }
      out.dirs = dirs;
      try { fs.openAsBlob(file); out.blob = 'ok'; } catch (err) { out.blob = err.code; }
      parentPort.postMessage(out);
      // Ended with its closes still queued: the process must not keep what it had.
      })();
    `;
    const out = await firstMessageOf(code, { dir });
    // The 50 FileHandles closing still count until their close settles (a moment later): 14 of 64 left for Dirs.
    expect(out).toMatchObject({ dir_refused: 'EMFILE', dirs: 14, blob: 'ERR_ACCESS_DENIED' });
    expect(out.closing_held as number).toBeLessThan(20);
    // Nothing the thread opened outlives it (a few for the jest process's own meanwhile).
    expect(await eventuallyTrue(() => processDescriptors() < before + 20)).toBe(true);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function eventuallyTrue(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/**
 * A close while this thread's operations on the descriptor wait in a busy thread pool: its number is free for the
 * whole process once closed, so a close at once sent the queued write to the file another thread opened next
 * under that number (helper-72). The close now waits for them, plain descriptors and FileHandles alike.
 */
test("a descriptor closed while its writes wait in the thread pool is closed after them: they never reach another thread's file", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-closing-writes-'));
  try {
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      const fs = require('node:fs'), path = require('node:path'), crypto = require('node:crypto');
      require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined);
      const { dir, kind } = workerData;
      (async () => {
        const handle = kind === 'filehandle' ? await fs.promises.open(path.join(dir, 'mine'), 'w') : null;
        const fd = handle ? handle.fd : fs.openSync(path.join(dir, 'mine'), 'w');
        for (let i = 0; i < 4; i++) crypto.pbkdf2('x', 'y', 1e6, 64, 'sha512', () => undefined);
        let written;
        if (handle) {
          written = handle.write('queued behind the pool');
          // Straight to its native handle, as agent code can: Node's own close would wait for the write.
          const kHandle = Object.getOwnPropertySymbols(handle).find((s) => s.description === 'kHandle');
          void handle[kHandle].close();
        } else {
          written = new Promise((resolve) => fs.write(fd, 'queued behind the pool', () => resolve()));
          fs.close(fd, () => undefined);
        }
        parentPort.postMessage({ fd });
        await written.catch(() => undefined);
        await new Promise((r) => setTimeout(r, 50));
        parentPort.postMessage({ done: true });
      })();
    `;
    for (const kind of ['descriptor', 'filehandle']) {
      const worker = new Worker(code, { eval: true, workerData: { dir, kind } });
      const victimFile = path.join(dir, `victim-${kind}`);
      let victim = -1;
      let closedFd = -1;
      await new Promise<void>((resolve, reject) => {
        worker.on('message', (msg: { fd?: number; done?: boolean }) => {
          // Another thread opens a file the moment the close was asked for.
          if (msg.fd !== undefined) {
            closedFd = msg.fd;
            victim = fs.openSync(victimFile, 'w');
          }
          if (msg.done) resolve();
        });
        worker.once('error', reject);
      });
      await worker.terminate();
      fs.closeSync(victim);
      // The close waited: the other thread got another number, and the write went where it was meant to.
      expect([kind, victim === closedFd, fs.readFileSync(victimFile, 'utf8'), fs.readFileSync(path.join(dir, 'mine'), 'utf8')]).toEqual([kind, false, '', 'queued behind the pool']);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Without THREAD_LOCKDOWN agent code can replace `Reflect.apply`: the socket wrappers sit inside the egress wall's,
 * and one that called it there handed the native `connect` to agent code, which then connected to loopback past
 * the egress wall (helper-72). They call only what they took at load.
 */
test('with Reflect.apply replaced, connecting through both walls hands no native socket member to agent code', async () => {
  const EGRESS = path.join(__dirname, '../../workers/worker/egress-guards.js');
  const HANDLES = path.join(__dirname, '../../workers/worker/socket-handles.js');
  const code = `
    const { parentPort } = require('node:worker_threads');
    const net = require('node:net'), dgram = require('node:dgram'), dns = require('node:dns');
    const handles = require(${JSON.stringify(HANDLES)}).socketHandles({ net, dgram, dns });
    const natives = new Set();
    for (const proto of [handles.tcp, handles.pipe, handles.udp]) for (const key of Object.getOwnPropertyNames(proto)) { const { value } = Object.getOwnPropertyDescriptor(proto, key); if (typeof value === 'function') natives.add(value); }
    require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined, undefined, handles, { max: 64, onLimit: () => undefined });
    require(${JSON.stringify(EGRESS)}).guardEgress({ mode: 'public', allow: [] }, () => undefined, handles);
    const realApply = Reflect.apply;
    let handedOut = 0;
    Reflect.apply = function spy(target, self, args) {
      if (natives.has(target)) handedOut++;
      return realApply(target, self, args);
    };
    (async () => {
      await new Promise((resolve) => {
        const s = net.connect({ port: 9, host: '1.1.1.1' });
        s.on('error', resolve);
        setTimeout(() => { s.destroy(); resolve(); }, 200);
      });
      await new Promise((resolve) => {
        const u = dgram.createSocket('udp4');
        u.send('x', 9, '1.1.1.1', () => { u.close(); resolve(); });
      });
      Reflect.apply = realApply;
      parentPort.postMessage({ handedOut });
    })();
  `;
  const out = await firstMessageOf<{ handedOut: number }>(code);
  expect(out.handedOut).toBe(0);
});

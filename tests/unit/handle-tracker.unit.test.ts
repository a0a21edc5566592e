/**
 * The handle tracker (workers/worker/handle-tracker.ts) takes a destroy only for a native handle whose wrap is freed,
 * or a timer Node marked destroyed: agent code can emit destroy for any id (helper-73 hid its sockets so, and its
 * worker was kept). Without the check the forged destroys below empty the count.
 */
import { createHook } from 'node:async_hooks';
import { AsyncResource } from 'node:async_hooks';
import dgram from 'node:dgram';
import dns from 'node:dns';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
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
  const tracker = createHandleTracker(createHook, getAsyncId);
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
  const tracker = createHandleTracker(createHook, getAsyncId);
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
  const tracker = createHandleTracker(createHook, getAsyncId);
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

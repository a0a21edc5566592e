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

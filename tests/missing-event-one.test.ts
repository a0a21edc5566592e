/**
 * Several nodes: a run's event 1 is published by the node that accepted it, the rest by the node running it.
 * If the accepting node dies between its commit and its publish, event 1 never comes. The socket server on a
 * fake bus and store with real socket.io clients: such a run, accepted after the socket joined, still reaches
 * the socket from the log (then live); a run the socket joined mid-stream is left to subscribe_run.
 */
import type { AddressInfo } from 'node:net';
import { io as connect, type Socket } from 'socket.io-client';
import { eventually } from './helpers/client';
import { ev, socketNodeRig as rig } from './helpers/socket-node-rig';

let r: ReturnType<typeof rig>;
let client: Socket;
let got: string[];

beforeEach(async () => {
  r = rig();
  await new Promise<void>((resolve) => r.http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(r.http.address() as AddressInfo).port}`;
  client = connect(url, { auth: { token: 'u' }, transports: ['websocket'], reconnection: false, forceNew: true });
  got = [];
  client.onAny((name: string, body: { run_id?: string; seq?: number }) => got.push(`${name} ${body.run_id}:${body.seq}`));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('connect_error', reject);
  });
});
afterEach(async () => {
  client.close();
  r.sockets.stop();
  await new Promise<void>((resolve) => r.sockets.io.close(() => resolve()));
});

test('a run whose event 1 never comes reaches the socket from the log after 2 s, in order, once, then live', async () => {
  const log = [ev(1, 'r1', 'message_received'), ev(2, 'r1', 'agent_thinking'), ev(3, 'r1')];
  r.runs.set('r1', { queuedAt: new Date(), log });
  r.publish(log[1]);
  r.publish(log[2]);
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(got).toEqual([]);
  expect(await eventually(() => got.length === 3, 10_000, 20)).toBe(true);
  expect(got).toEqual(['message_received r1:1', 'agent_thinking r1:2', 'partial_result r1:3']);
  const done = ev(4, 'r1', 'agent_completed');
  log.push(done);
  r.publish(done);
  expect(await eventually(() => got.length === 4, 5_000, 20)).toBe(true);
  expect(got[3]).toBe('agent_completed r1:4');
  expect(r.lookups).toEqual(['r1']);
});

test('a run the socket joined mid-stream is looked up once and left to subscribe_run', async () => {
  r.runs.set('old', { queuedAt: new Date(Date.now() - 60_000), log: [] });
  r.publish(ev(40, 'old'));
  expect(await eventually(() => r.lookups.length === 1, 10_000, 20)).toBe(true);
  for (let seq = 41; seq < 60; seq++) r.publish(ev(seq, 'old'));
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  expect(r.lookups).toEqual(['old']);
  expect(got).toEqual([]);
});

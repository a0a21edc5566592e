/**
 * After a bus gap, each socket is sent the runs its user started meanwhile that it never heard of (socket-server.ts,
 * announceMissedRuns): the log of each within the socket's budget, or resync_required from 0. A run whose log could
 * not be read then (the database did not answer) must still be announced: it was marked known to the socket (a
 * cursor at 0) and never named to it, so a finished run stayed unknown to the client, also after later gaps.
 */
import type { AddressInfo } from 'node:net';
import { io as connect } from 'socket.io-client';
import { eventually } from './helpers/client';
import { ev, socketNodeRig as rig } from './helpers/socket-node-rig';

test('a missed run whose log cannot be read after a bus gap is announced with resync_required', async () => {
  const r = rig();
  await new Promise<void>((resolve) => r.http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(r.http.address() as AddressInfo).port}`;
  const client = connect(url, { auth: { token: 'u' }, transports: ['websocket'], reconnection: false, forceNew: true });
  const got: string[] = [];
  client.onAny((name: string, body: { run_id?: string; seq?: number; last_seq?: number }) => got.push(`${name} ${body.run_id}:${body.seq ?? body.last_seq}`));
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('connect_error', reject);
    });
    // Two runs accepted and finished on another node during the gap; the log of one cannot be read.
    r.runs.set('ok', { queuedAt: new Date(Date.now() + 1000), log: [ev(1, 'ok', 'message_received'), ev(2, 'ok', 'agent_completed')] });
    r.runs.set('unread', { queuedAt: new Date(Date.now() + 1000), log: [ev(1, 'unread', 'message_received'), ev(2, 'unread', 'agent_completed')] });
    r.failing.add('unread');
    r.gap();
    expect(await eventually(() => got.length >= 2, 5_000, 20)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(got.filter((g) => g.includes(' ok:'))).toEqual(['message_received ok:1', 'agent_completed ok:2']);
    expect(got.filter((g) => g.includes(' unread:'))).toEqual(['resync_required unread:0']);
  } finally {
    client.close();
    r.sockets.stop();
    await new Promise<void>((resolve) => r.sockets.io.close(() => resolve()));
  }
});

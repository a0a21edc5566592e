/**
 * The outbox watcher on a fake engine.io connection and a fake clock: what is queued and in flight, when it
 * counts as taken, and how long a socket has been stalled.
 */
import { EventEmitter } from 'node:events';
import { watchOutbox } from '../../server/realtime/outbox';

function rig() {
  const conn = Object.assign(new EventEmitter(), { transport: { writable: true } });
  let t = 1000;
  const clock = { now: () => t, advance: (ms: number) => (t += ms) };
  const outbox = watchOutbox(conn, clock.now);
  const packet = (data?: unknown) => {
    conn.transport.writable = false;
    conn.emit('packetCreate', { data });
  };
  return { conn, clock, outbox, packet };
}

test('an idle connection has nothing outstanding and is never stalled', () => {
  const { outbox, clock } = rig();
  clock.advance(60_000);
  expect([outbox.bytes(), outbox.packets(), outbox.stalledMs()]).toEqual([0, 0, 0]);
});

test('packets count their data size plus one byte each: strings in UTF-8 bytes, buffers by length, others as 0', () => {
  const { outbox, packet } = rig();
  packet('héllo'); // 6 bytes + 1
  packet(Buffer.alloc(10)); // 10 + 1
  packet(new Uint8Array(3).buffer); // 3 + 1
  packet({ not: 'sized' }); // 0 + 1
  packet(); // 0 + 1
  packet(null); // 0 + 1
  expect(outbox.packets()).toBe(6);
  expect(outbox.bytes()).toBe(7 + 11 + 4 + 1 + 1 + 1);
});

test('a flush moves what was queued in flight; the next flush means it was written', () => {
  const { conn, outbox, packet } = rig();
  packet('aa');
  packet('bbb');
  conn.emit('flush');
  expect([outbox.packets(), outbox.bytes()]).toEqual([2, 7]);
  packet('c');
  expect([outbox.packets(), outbox.bytes()]).toEqual([3, 9]);
  conn.emit('flush'); // the first batch is done; 'c' is now in flight
  expect([outbox.packets(), outbox.bytes()]).toEqual([1, 2]);
  conn.transport.writable = true; // nothing in flight, nothing queued: idle
  expect([outbox.packets(), outbox.bytes()]).toEqual([0, 0]);
});

test('a writable transport with packets still queued is not idle', () => {
  const { conn, outbox, packet } = rig();
  packet('abc');
  conn.transport.writable = true;
  expect([outbox.packets(), outbox.bytes()]).toEqual([1, 4]);
});

test('stalledMs counts from the last progress (a flush), and restarts once the socket is idle', () => {
  const { conn, outbox, clock, packet } = rig();
  packet('x');
  clock.advance(300);
  expect(outbox.stalledMs()).toBe(300);
  conn.emit('flush');
  clock.advance(200);
  expect(outbox.stalledMs()).toBe(200);
  conn.transport.writable = true;
  conn.emit('flush');
  expect(outbox.stalledMs()).toBe(0);
  clock.advance(5000);
  // Idle all that time: a packet queued now has been outstanding for no time at all.
  expect(outbox.stalledMs()).toBe(0);
  packet('y');
  clock.advance(100);
  expect(outbox.stalledMs()).toBe(100);
});

test('stop stops listening', () => {
  const { conn, outbox, packet } = rig();
  outbox.stop();
  expect(conn.listenerCount('packetCreate')).toBe(0);
  expect(conn.listenerCount('flush')).toBe(0);
  packet('x');
  expect(outbox.packets()).toBe(0);
});

test('the default clock is Date.now', () => {
  const conn = Object.assign(new EventEmitter(), { transport: { writable: false } });
  const outbox = watchOutbox(conn);
  conn.emit('packetCreate', { data: 'x' });
  const stalled = outbox.stalledMs();
  expect(stalled).toBeGreaterThanOrEqual(0);
  expect(stalled).toBeLessThan(60_000);
});

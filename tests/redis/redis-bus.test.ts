/**
 * The Redis event bus between two nodes, on the real Redis: events reach the other node's subscribers in the
 * order published and this node's own exactly once; subscribe resolves once Redis has the subscription; a
 * subscriber connection cut from the server's side gives onGap once it is subscribed again, a PUBLISH that
 * could not go out gives the other nodes onGap before the next event, and delivery resumes in both cases.
 */
import { once } from 'node:events';
import type { Redis } from 'ioredis';
import type { RunEventEnvelope } from '../../protocol/events';
import type { BusListener } from '../../server/bus/event-bus';
import type { RedisCluster } from '../../server/redis-cluster';
import { adminConnection, dropPrefix, killConnection, scratchPrefix, startNode, stopNode, TEST_REDIS_URL } from '../helpers/redis-scratch';
import { startTcpProxy } from '../helpers/tcp-proxy';

const event = (seq: number, userId = 'u', runId = `r-${userId}`) =>
  ({ type: 'partial_result', event_id: `${runId}-${seq}`, seq, run_id: runId, thread_id: 't', user_id: userId, agent_name: 'echo', timestamp: '2026-01-01T00:00:00.000Z', payload: { text: `${seq}` } }) as RunEventEnvelope;

/** A listener that records `seq` of each event and `gap` for each gap, and lets a test wait for an entry. */
function recorder() {
  const seen: (number | 'gap')[] = [];
  const waiters: { until: (seen: (number | 'gap')[]) => boolean; resolve: () => void }[] = [];
  const note = (x: number | 'gap') => {
    seen.push(x);
    for (const w of waiters.splice(0)) {
      if (w.until(seen)) w.resolve();
      else waiters.push(w);
    }
  };
  const listener: BusListener = { onEvent: (e) => note(e.seq), onGap: () => note('gap') };
  return {
    seen,
    listener,
    /** Resolves once `until(seen)` holds. */
    when(until: (seen: (number | 'gap')[]) => boolean): Promise<void> {
      if (until(seen)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ until, resolve }));
    },
  };
}

let admin: Redis;
let prefix: string;
let a: RedisCluster;
let b: RedisCluster;
/** Node ids of this file's own: connections are named after them (CLIENT KILL finds them by name). */
const A = `bus-a-${process.pid}`;
const B = `bus-b-${process.pid}`;

beforeEach(async () => {
  admin = adminConnection();
  prefix = scratchPrefix();
  a = await startNode(prefix, A);
  b = await startNode(prefix, B);
});

afterEach(async () => {
  await stopNode(a);
  await stopNode(b);
  await dropPrefix(admin, prefix);
  await admin.quit();
});

test('events reach the other node in the order published; the publishing node\'s own subscribers get each once', async () => {
  const onA = recorder();
  const onB = recorder();
  await a.bus.subscribe('u', onA.listener);
  await b.bus.subscribe('u', onB.listener);
  for (let seq = 1; seq <= 300; seq++) a.bus.publish(event(seq));
  const all = Array.from({ length: 300 }, (_, i) => i + 1);
  // a's own were delivered directly, before publish returned.
  expect(onA.seen).toEqual(all);
  await onB.when((s) => s.length >= 300);
  expect(onB.seen).toEqual(all);
  // b publishes only after it has all of a's: Redis sends a its own messages (if it did not ignore them)
  // before b's, on the one subscriber connection, so when b's arrives nothing of a's can still come.
  b.bus.publish(event(1, 'u', 'r-from-b'));
  await onA.when((s) => s.length >= 301);
  expect(onA.seen).toEqual([...all, 1]);
  expect(onB.seen).toEqual([...all, 1]);
});

test('the PUBLISHes of one event-loop turn leave as one write, each user\'s in the order published', async () => {
  const onU = recorder();
  const onV = recorder();
  await b.bus.subscribe('u', onU.listener);
  await b.bus.subscribe('v', onV.listener);
  // Writes the command connection's socket hands to the kernel that carry a PUBLISH (corked writes leave as one
  // _writev; other parts of the node may write on the same connection meanwhile).
  const socket = a.connections.command.stream as unknown as { _write: (...args: unknown[]) => void; _writev: (...args: unknown[]) => void };
  const { _write, _writev } = socket;
  let writes = 0;
  const publishes = (data: unknown) => /publish/i.test(String(data));
  socket._write = function (this: unknown, ...args: unknown[]) {
    if (publishes(args[0])) writes++;
    return _write.apply(this, args);
  };
  socket._writev = function (this: unknown, ...args: unknown[]) {
    if ((args[0] as { chunk: unknown }[]).some((c) => publishes(c.chunk))) writes++;
    return _writev.apply(this, args);
  };
  try {
    for (let seq = 1; seq <= 50; seq++) {
      a.bus.publish(event(seq, 'u'));
      a.bus.publish(event(seq, 'v'));
    }
    const all = Array.from({ length: 50 }, (_, i) => i + 1);
    await onU.when((s) => s.length >= 50);
    await onV.when((s) => s.length >= 50);
    expect(onU.seen).toEqual(all);
    expect(onV.seen).toEqual(all);
    expect(writes).toBe(1);
    // The next turn's are a write of their own.
    a.bus.publish(event(51, 'u'));
    await onU.when((s) => s.length >= 51);
    expect(writes).toBe(2);
  } finally {
    socket._write = _write;
    socket._writev = _writev;
  }
});

test('what was published in the turn a node stops still leaves, before its connections close', async () => {
  const onB = recorder();
  await b.bus.subscribe('u', onB.listener);
  a.bus.publish(event(1));
  a.bus.publish(event(2));
  // The bus stops and the connections close in the same turn: their QUIT must queue behind the two.
  await Promise.all([a.bus.stop(), a.stop()]);
  // Redis handled a's commands before its QUIT was answered: a message sent now reaches b after them.
  await admin.publish(`${prefix}user:u`, JSON.stringify({ n: 'node-x', e: event(3) }));
  await onB.when((s) => s.includes(3));
  expect(onB.seen).toEqual([1, 2, 3]);
  await stopNode(a);
  a = await startNode(prefix, A);
});

test('subscribe resolves once Redis has the subscription; several per user are independent; the channel goes with the last', async () => {
  const channel = `${prefix}user:v`;
  const first = recorder();
  const second = recorder();
  const offFirst = await b.bus.subscribe('v', first.listener);
  // PUBLISH answers how many subscribers Redis had for the channel at that moment.
  const foreign = JSON.stringify({ n: 'node-x', e: event(1, 'v') });
  expect(await admin.publish(channel, foreign)).toBe(1);
  await first.when((s) => s.includes(1));
  const offSecond = await b.bus.subscribe('v', second.listener);
  a.bus.publish(event(2, 'v'));
  await second.when((s) => s.includes(2));
  await first.when((s) => s.includes(2));
  offFirst();
  offFirst();
  a.bus.publish(event(3, 'v'));
  await second.when((s) => s.includes(3));
  expect(first.seen).toEqual([1, 2]);
  offSecond();
  // The UNSUBSCRIBE went out with the last unsubscribe; a PING after it on the same connection answers after it.
  await b.connections.subscriber.ping();
  expect(await admin.publish(channel, foreign)).toBe(0);
  expect(second.seen).toEqual([2, 3]);
});

test('subscribe resolves only once Redis acknowledged the SUBSCRIBE', async () => {
  const proxy = await startTcpProxy(Number(new URL(TEST_REDIS_URL).port || 6379), new URL(TEST_REDIS_URL).hostname);
  const far = await startNode(prefix, `bus-far-${process.pid}`, {}, `redis://127.0.0.1:${proxy.port}`);
  try {
    // Nothing reaches Redis from node-far now: its SUBSCRIBE waits in the proxy.
    proxy.freeze();
    let resolved = false;
    const subscribed = far.bus.subscribe('z', recorder().listener).then((off) => {
      resolved = true;
      return off;
    });
    expect(await admin.publish(`${prefix}user:z`, 'x')).toBe(0);
    expect(resolved).toBe(false);
    proxy.restore();
    await subscribed;
    expect(await admin.publish(`${prefix}user:z`, 'x')).toBe(1);
  } finally {
    proxy.restore();
    await stopNode(far);
    await proxy.close();
  }
});

test('messages that are not ours, or for another user, are ignored', async () => {
  const onB = recorder();
  await b.bus.subscribe('w', onB.listener);
  const channel = `${prefix}user:w`;
  await admin.publish(channel, 'not json');
  await admin.publish(channel, JSON.stringify({ e: event(1, 'w') }));
  await admin.publish(channel, JSON.stringify({ n: 'node-x', e: event(2, 'someone-else') }));
  await admin.publish(channel, JSON.stringify({ n: 'node-x', e: { seq: 3 } }));
  await admin.publish(channel, JSON.stringify({ n: 'node-x', e: event(4, 'w') }));
  await onB.when((s) => s.length >= 1);
  expect(onB.seen).toEqual([4]);
});

test('the subscriber connection cut by the server: onGap once the subscription is back in force, then events flow again', async () => {
  const onB = recorder();
  await b.bus.subscribe('u', onB.listener);
  a.bus.publish(event(1));
  await onB.when((s) => s.includes(1));
  // At onGap, Redis already has b's subscription again: a PUBLISH sent from the handler reaches b.
  let receiversAtGap: Promise<number> | null = null;
  const watcher: BusListener = { onEvent: () => undefined, onGap: () => (receiversAtGap ??= admin.publish(`${prefix}user:u`, JSON.stringify({ n: 'node-x', gap: true }))) };
  await b.bus.subscribe('u', watcher);
  await killConnection(admin, `atoll:${B}:subscriber`);
  await onB.when((s) => s.includes('gap'));
  expect(await receiversAtGap).toBe(1);
  a.bus.publish(event(2));
  await onB.when((s) => s.includes(2));
  // The gap from the server's reconnect, then the admin's gap notice (a foreign node's), then event 2.
  expect(onB.seen).toEqual([1, 'gap', 'gap', 2]);
});

test('a subscription asked for while the subscriber connection is reconnecting is refused REDIS_UNAVAILABLE (retryable), and works once it is back', async () => {
  const closed = once(b.connections.subscriber, 'close');
  await killConnection(admin, `atoll:${B}:subscriber`);
  await closed;
  // The command connection is up: only the subscriber is away (its first retry comes 100 ms after the close).
  expect(b.connections.command.status).toBe('ready');
  expect(b.connections.subscriber.status).not.toBe('ready');
  await expect(b.bus.subscribe('late', recorder().listener)).rejects.toMatchObject({ code: 'REDIS_UNAVAILABLE', message: expect.stringContaining("cannot follow its user's events") });
  await once(b.connections.subscriber, 'ready');
  const onB = recorder();
  await b.bus.subscribe('late', onB.listener);
  a.bus.publish(event(1, 'late'));
  await onB.when((s) => s.includes(1));
});

test('a PUBLISH that could not go out: the other node gets onGap before the next event of that user', async () => {
  const onA = recorder();
  const onB = recorder();
  const onBOther = recorder();
  await a.bus.subscribe('u', onA.listener);
  await b.bus.subscribe('u', onB.listener);
  await b.bus.subscribe('other', onBOther.listener);
  a.bus.publish(event(1));
  await onB.when((s) => s.includes(1));
  const closed = once(a.connections.command, 'close');
  await killConnection(admin, `atoll:${A}:command`);
  await closed;
  // Reconnecting: the PUBLISH is not sent; a's own subscriber still gets the event directly.
  a.bus.publish(event(2));
  expect(onA.seen).toEqual([1, 2]);
  // Published as soon as the connection is back, before the bus itself hears of it: the gap notice still
  // goes out first.
  a.connections.command.prependOnceListener('ready', () => a.bus.publish(event(3)));
  await once(a.connections.command, 'ready');
  a.bus.publish(event(1, 'other'));
  await onB.when((s) => s.includes(3));
  expect(onB.seen).toEqual([1, 'gap', 3]);
  // Only the user whose event was lost is told.
  await onBOther.when((s) => s.includes(1));
  expect(onBOther.seen).toEqual([1]);
});

test('a lost PUBLISH is announced when the connection is back even if that user publishes nothing more', async () => {
  const onB = recorder();
  await b.bus.subscribe('u', onB.listener);
  const closed = once(a.connections.command, 'close');
  await killConnection(admin, `atoll:${A}:command`);
  await closed;
  a.bus.publish(event(1));
  await onB.when((s) => s.includes('gap'));
  expect(onB.seen).toEqual(['gap']);
});

test('gap() tells every listener of this node', async () => {
  const u = recorder();
  const v = recorder();
  await b.bus.subscribe('u', u.listener);
  await b.bus.subscribe('v', v.listener);
  b.bus.gap();
  expect([u.seen, v.seen]).toEqual([['gap'], ['gap']]);
});

/**
 * The in-process event bus: per-user subscriptions, a direct call to each subscriber of the event's user in
 * publish order, in force as soon as subscribe is called; unsubscribe and stop; never a gap.
 */
import type { RunEventEnvelope } from '../../protocol/events';
import type { BusListener } from '../../server/bus/event-bus';
import { createInProcessEventBus } from '../../server/bus/in-process/in-process-bus';

const event = (seq: number, userId = 'u') => ({ type: 'partial_result', seq, run_id: `r-${userId}`, user_id: userId, payload: { text: `${seq}` } }) as RunEventEnvelope;

/** A listener that records `user:seq` of each event and counts gaps. */
function recorder() {
  const seen: string[] = [];
  let gaps = 0;
  const listener: BusListener = { onEvent: (e) => seen.push(`${e.user_id}:${e.seq}`), onGap: () => gaps++ };
  return { seen, listener, gaps: () => gaps };
}

test('publish reaches every subscriber of the event\'s user before it returns, in order; unsubscribe and stop end delivery', async () => {
  const bus = createInProcessEventBus();
  await bus.start();
  const a = recorder();
  const b = recorder();
  const offA = await bus.subscribe('u', a.listener);
  await bus.subscribe('u', b.listener);
  bus.publish(event(1));
  bus.publish(event(2));
  expect([a.seen, b.seen]).toEqual([['u:1', 'u:2'], ['u:1', 'u:2']]);
  offA();
  offA();
  bus.publish(event(3));
  expect([a.seen, b.seen]).toEqual([['u:1', 'u:2'], ['u:1', 'u:2', 'u:3']]);
  await bus.stop();
  bus.publish(event(4));
  expect(b.seen).toEqual(['u:1', 'u:2', 'u:3']);
  expect([a.gaps(), b.gaps()]).toEqual([0, 0]);
});

test('each subscriber gets its own user\'s events only; a user nobody subscribed to reaches no one', async () => {
  const bus = createInProcessEventBus();
  const u = recorder();
  const v = recorder();
  const offU = await bus.subscribe('u', u.listener);
  await bus.subscribe('v', v.listener);
  bus.publish(event(1, 'u'));
  bus.publish(event(1, 'v'));
  bus.publish(event(1, 'w'));
  bus.publish(event(2, 'u'));
  expect(u.seen).toEqual(['u:1', 'u:2']);
  expect(v.seen).toEqual(['v:1']);
  // Unsubscribing one user leaves the other's subscription alone, and a new subscription of the first works.
  offU();
  bus.publish(event(3, 'u'));
  bus.publish(event(2, 'v'));
  const again = recorder();
  await bus.subscribe('u', again.listener);
  bus.publish(event(4, 'u'));
  expect(u.seen).toEqual(['u:1', 'u:2']);
  expect(v.seen).toEqual(['v:1', 'v:2']);
  expect(again.seen).toEqual(['u:4']);
});

test('a subscription is in force when subscribe is called, before its promise settles', () => {
  const bus = createInProcessEventBus();
  const a = recorder();
  void bus.subscribe('u', a.listener);
  bus.publish(event(1));
  expect(a.seen).toEqual(['u:1']);
});

test('one listener subscribed twice is called twice and unsubscribed once per subscription', async () => {
  const bus = createInProcessEventBus();
  const a = recorder();
  const off1 = await bus.subscribe('u', a.listener);
  await bus.subscribe('u', a.listener);
  bus.publish(event(1));
  off1();
  bus.publish(event(2));
  expect(a.seen).toEqual(['u:1', 'u:1', 'u:2']);
});

test('an unsubscribe from before stop leaves a subscription made after it alone', async () => {
  const bus = createInProcessEventBus();
  const old = await bus.subscribe('u', recorder().listener);
  await bus.stop();
  const a = recorder();
  await bus.subscribe('u', a.listener);
  old();
  bus.publish(event(1));
  expect(a.seen).toEqual(['u:1']);
});

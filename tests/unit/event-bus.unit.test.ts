/** The in-process event bus: a direct call to each subscriber, in publish order; unsubscribe and stop. */
import type { RunEventEnvelope } from '../../protocol/events';
import { createInProcessEventBus } from '../../server/bus/in-process/in-process-bus';

const event = (seq: number) => ({ type: 'partial_result', seq, run_id: 'r', user_id: 'u', payload: { text: `${seq}` } }) as RunEventEnvelope;

test('publish reaches every subscriber before it returns, in order; unsubscribe and stop end delivery', async () => {
  const bus = createInProcessEventBus();
  await bus.start();
  const a: number[] = [];
  const b: number[] = [];
  const offA = bus.subscribe((e) => a.push(e.seq));
  bus.subscribe((e) => b.push(e.seq));
  bus.publish(event(1));
  bus.publish(event(2));
  expect([a, b]).toEqual([[1, 2], [1, 2]]);
  offA();
  offA();
  bus.publish(event(3));
  expect([a, b]).toEqual([[1, 2], [1, 2, 3]]);
  await bus.stop();
  bus.publish(event(4));
  expect(b).toEqual([1, 2, 3]);
});

test('one function subscribed twice is called twice and unsubscribed once per subscription', () => {
  const bus = createInProcessEventBus();
  const seen: number[] = [];
  const listener = (e: RunEventEnvelope) => seen.push(e.seq);
  const off1 = bus.subscribe(listener);
  bus.subscribe(listener);
  bus.publish(event(1));
  off1();
  bus.publish(event(2));
  expect(seen).toEqual([1, 1, 2]);
});

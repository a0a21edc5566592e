/**
 * A node's per-user bus subscriptions: the first socket of a user subscribes, the others share it, the last
 * to go unsubscribes (also when it goes before the subscription is in place); a failed subscribe is not shared.
 */
import type { BusListener, Unsubscribe } from '../../server/bus/event-bus';
import { createUserSubscriptions } from '../../server/realtime/user-subscriptions';

/** A bus whose subscribe answers only when the test says so; it records subscribes and unsubscribes. */
function slowBus() {
  const calls: string[] = [];
  const pending: { userId: string; resolve: (u: Unsubscribe) => void; reject: (e: Error) => void }[] = [];
  const bus = {
    subscribe(userId: string, _listener: BusListener): Promise<Unsubscribe> {
      calls.push(`sub ${userId}`);
      return new Promise<Unsubscribe>((resolve, reject) => pending.push({ userId, resolve, reject }));
    },
  };
  const answer = () => {
    const p = pending.shift()!;
    p.resolve(() => calls.push(`unsub ${p.userId}`));
  };
  const fail = () => pending.shift()!.reject(new Error('bus down'));
  return { bus, calls, answer, fail };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));
const listenerOf = (): BusListener => ({ onEvent: () => undefined, onGap: () => undefined });

test('the first hold subscribes, later ones share it, the last release unsubscribes once', async () => {
  const { bus, calls, answer } = slowBus();
  const subs = createUserSubscriptions(bus, listenerOf);
  const first = subs.hold('u');
  const second = subs.hold('u');
  let ready = false;
  void first.then(() => (ready = true));
  await settle();
  expect(ready).toBe(false); // not before the bus has subscribed
  answer();
  const [r1, r2] = await Promise.all([first, second]);
  expect(subs.users()).toBe(1);
  r1();
  r1();
  await settle();
  expect(calls).toEqual(['sub u']);
  r2();
  await settle();
  expect(calls).toEqual(['sub u', 'unsub u']);
  expect(subs.users()).toBe(0);
  // The next socket subscribes anew.
  const r3 = subs.hold('u');
  answer();
  (await r3)();
  await settle();
  expect(calls).toEqual(['sub u', 'unsub u', 'sub u', 'unsub u']);
});

test('users are subscribed separately', async () => {
  const { bus, calls, answer } = slowBus();
  const subs = createUserSubscriptions(bus, listenerOf);
  const u = subs.hold('u');
  const v = subs.hold('v');
  answer();
  answer();
  (await u)();
  await v;
  await settle();
  expect(calls).toEqual(['sub u', 'sub v', 'unsub u']);
});

test('a subscription let go of before it is in place is unsubscribed once it is', async () => {
  const { bus, calls, answer } = slowBus();
  const subs = createUserSubscriptions(bus, listenerOf);
  const held = subs.hold('u');
  subs.clear();
  expect(subs.users()).toBe(0);
  answer();
  const release = await held;
  await settle();
  expect(calls).toEqual(['sub u', 'unsub u']);
  release(); // after clear: nothing more
  await settle();
  expect(calls).toEqual(['sub u', 'unsub u']);
});

test('a failed subscribe rejects its holders, and the next hold tries again', async () => {
  const { bus, calls, answer, fail } = slowBus();
  const subs = createUserSubscriptions(bus, listenerOf);
  const a = subs.hold('u');
  const b = subs.hold('u');
  fail();
  await expect(a).rejects.toThrow('bus down');
  await expect(b).rejects.toThrow('bus down');
  expect(subs.users()).toBe(0);
  const c = subs.hold('u');
  answer();
  (await c)();
  await settle();
  expect(calls).toEqual(['sub u', 'sub u', 'unsub u']);
});

/**
 * The event bus of a single node: publish calls each subscriber of the event's user directly, in subscription
 * order, before it returns, so events reach the sockets in the order the relay published them. Nothing to
 * connect and nothing to lose: a subscription is in force as soon as subscribe is called, onGap is never
 * called, start() does nothing, stop() drops the subscribers (a publish after it reaches no one).
 */
import type { BusListener, EventBus } from '../event-bus.js';

export function createInProcessEventBus(): EventBus {
  const byUser = new Map<string, Set<BusListener>>();
  return {
    publish(envelope) {
      for (const listener of byUser.get(envelope.user_id) ?? []) listener.onEvent(envelope);
    },
    async subscribe(userId, listener) {
      // A wrapper per subscription: the same listener subscribed twice is called twice, unsubscribed once each.
      const entry: BusListener = { onEvent: (e) => listener.onEvent(e), onGap: () => listener.onGap() };
      let listeners = byUser.get(userId);
      if (!listeners) byUser.set(userId, (listeners = new Set()));
      listeners.add(entry);
      return () => {
        const current = byUser.get(userId);
        if (!current?.delete(entry)) return;
        if (current.size === 0) byUser.delete(userId);
      };
    },
    async start() {},
    async stop() {
      byUser.clear();
    },
  };
}

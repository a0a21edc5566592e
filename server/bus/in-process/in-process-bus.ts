/**
 * The event bus of a single node: publish calls each subscriber directly, in subscription order, before it
 * returns, so events reach the sockets in the order the relay published them. Nothing to connect:
 * start() does nothing; stop() drops the subscribers (a publish after it reaches no one).
 */
import type { EventBus, EventListener } from '../event-bus.js';

export function createInProcessEventBus(): EventBus {
  const listeners = new Set<EventListener>();
  return {
    publish(envelope) {
      for (const listener of listeners) listener(envelope);
    },
    subscribe(listener) {
      // A wrapper per subscription: the same function subscribed twice is called twice, unsubscribed once each.
      const entry: EventListener = (e) => listener(e);
      listeners.add(entry);
      return () => {
        listeners.delete(entry);
      };
    },
    async start() {},
    async stop() {
      listeners.clear();
    },
  };
}

/**
 * This node's bus subscriptions, one per user it holds a socket of: the first socket of a user subscribes,
 * the others share that subscription, and the last one to go lets it go. A Redis bus then listens on a
 * user's channel only while this node can deliver to that user.
 */
import type { BusListener, EventBus, Unsubscribe } from '../bus/event-bus.js';

interface Held {
  /** Sockets holding the subscription (counted from the call of hold, before it resolves). */
  holders: number;
  subscribed: Promise<Unsubscribe>;
}

export function createUserSubscriptions(bus: Pick<EventBus, 'subscribe'>, listenerOf: (userId: string) => BusListener) {
  const users = new Map<string, Held>();

  /** Unsubscribes once the subscription is in place (it may still be on its way). */
  function drop(held: Held): void {
    held.subscribed.then(
      (unsubscribe) => unsubscribe(),
      () => undefined,
    );
  }

  return {
    /**
     * Holds the user's subscription for one socket. Resolves, with the release (safe to call more than once),
     * once the user's events reach this node; rejects if the bus could not subscribe.
     */
    async hold(userId: string): Promise<() => void> {
      let held = users.get(userId);
      if (!held) users.set(userId, (held = { holders: 0, subscribed: bus.subscribe(userId, listenerOf(userId)) }));
      const mine = held;
      mine.holders++;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        // A subscription that was let go of (failed, or stop) is no longer the user's: nothing to count.
        if (--mine.holders > 0 || users.get(userId) !== mine) return;
        users.delete(userId);
        drop(mine);
      };
      try {
        await mine.subscribed;
      } catch (err) {
        // The next socket of this user tries again rather than sharing the failure.
        if (users.get(userId) === mine) users.delete(userId);
        release();
        throw err;
      }
      return release;
    },
    /** Users with a subscription held (on its way or in place). */
    users(): number {
      return users.size;
    },
    /** Lets go of every subscription (the socket server stops); releases after it do nothing. */
    clear(): void {
      for (const held of users.values()) drop(held);
      users.clear();
    },
  };
}

export type UserSubscriptions = ReturnType<typeof createUserSubscriptions>;

/**
 * The channels of the node's one subscriber connection, shared by the event bus (a channel per user) and the
 * node messages (two channels): each channel is SUBSCRIBEd while someone holds it and UNSUBSCRIBEd when the
 * last holder lets go, with SUBSCRIBE and UNSUBSCRIBE sent in the order of the calls (one connection: Redis
 * applies them in that order, so a quick release-then-hold ends subscribed).
 *
 * After the connection comes back, ioredis has already resubscribed what it knew (autoResubscribe); this
 * subscribes every held channel once more and waits for the answer (a channel already subscribed is a no-op
 * for Redis), so when `onResubscribed` handlers run every held channel is in force again: a replay the bus
 * asks for then cannot miss an event published before the subscription was back. Channels let go of while
 * the connection was down (their UNSUBSCRIBE could not be sent) are unsubscribed then too.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../logger.js';

export interface HeldChannel {
  /** Resolves once Redis acknowledged the channel's SUBSCRIBE (at once if it already had). */
  subscribed: Promise<void>;
  /** Lets go of the channel (safe to call more than once). */
  release(): void;
}

interface Channel {
  handlers: Set<{ onMessage: (message: string) => void }>;
  subscribed: Promise<void>;
}

export function createSubscriberChannels(subscriber: Redis, log: Logger) {
  const channels = new Map<string, Channel>();
  /** Channels let go of whose UNSUBSCRIBE could not be sent: unsubscribed once the connection is back. */
  const leftovers = new Set<string>();
  const resubscribedHandlers = new Set<() => void>();
  let readyBefore = false;
  let stopped = false;

  subscriber.on('message', (channel: string, message: string) => {
    for (const h of channels.get(channel)?.handlers ?? []) {
      try {
        h.onMessage(message);
      } catch (err) {
        log.error({ err, channel }, 'a Redis channel handler threw');
      }
    }
  });
  subscriber.on('ready', () => {
    if (!readyBefore) {
      readyBefore = true;
      return;
    }
    void resubscribe();
  });

  function unsubscribe(channel: string): void {
    subscriber.unsubscribe(channel).catch(() => leftovers.add(channel));
  }

  async function resubscribe(): Promise<void> {
    const held = [...channels.keys()];
    const stale = [...leftovers].filter((c) => !channels.has(c));
    leftovers.clear();
    try {
      if (stale.length) await subscriber.unsubscribe(...stale);
      if (held.length) await subscriber.subscribe(...held);
    } catch (err) {
      // The connection dropped again: its next ready tries again.
      for (const c of stale) leftovers.add(c);
      log.warn({ err: String(err) }, 'Redis subscriber: resubscribing after a reconnect failed; retried at the next reconnect');
      return;
    }
    if (stopped) return;
    log.info({ channels: held.length }, 'Redis subscriber reconnected: subscriptions in force again');
    for (const h of resubscribedHandlers) {
      try {
        h();
      } catch (err) {
        log.error({ err }, 'a Redis resubscribe handler threw');
      }
    }
  }

  return {
    /** Holds `channel` for one holder: `onMessage` gets each message on it from now on until release. */
    hold(channel: string, onMessage: (message: string) => void): HeldChannel {
      let entry = channels.get(channel);
      if (!entry) {
        const created: Channel = { handlers: new Set(), subscribed: subscriber.subscribe(channel).then(() => undefined) };
        created.subscribed.catch(() => {
          // Refused (the connection is down) or unanswered: the next holder subscribes afresh. An UNSUBSCRIBE
          // after it undoes a SUBSCRIBE that Redis may still have applied.
          if (channels.get(channel) !== created) return;
          channels.delete(channel);
          unsubscribe(channel);
        });
        channels.set(channel, (entry = created));
      }
      const mine = entry;
      const handler = { onMessage };
      mine.handlers.add(handler);
      return {
        subscribed: mine.subscribed,
        release() {
          if (!mine.handlers.delete(handler) || mine.handlers.size > 0 || channels.get(channel) !== mine) return;
          channels.delete(channel);
          unsubscribe(channel);
        },
      };
    },
    /** Calls `handler` each time the connection came back and every held channel is subscribed again. */
    onResubscribed(handler: () => void): () => void {
      resubscribedHandlers.add(handler);
      return () => resubscribedHandlers.delete(handler);
    },
    /** Channels held now. */
    size(): number {
      return channels.size;
    },
    /** No more resubscribe notices (the connection is about to close). */
    stop(): void {
      stopped = true;
    },
  };
}

export type SubscriberChannels = ReturnType<typeof createSubscriberChannels>;

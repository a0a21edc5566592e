/**
 * The event bus of several nodes, over Redis pub/sub: a channel per user, `<prefix>user:<userId>`.
 *
 * - publish: this node's own subscribers of the user get the event at once, by a direct call (as on one node:
 *   no Redis latency for local sockets, and no dependence on Redis for them); the event is also PUBLISHed on
 *   the user's channel, once serialized and tagged with this node's id, for the other nodes. Every PUBLISH goes
 *   out on the one command connection, so a run's events leave in the order published. The PUBLISHes of one
 *   event-loop turn (a group commit's events, of every run in it) leave together at the turn's end, in one
 *   write (the socket corked while they are sent): one write for the node and one read for Redis instead of one
 *   per event. A subscriber ignores messages tagged with its own node's id (it had them directly).
 * - subscribe: holds the user's channel on the node's subscriber connection (one connection for all users,
 *   channels counted by holder) and resolves once Redis acknowledged the SUBSCRIBE.
 * - gaps: Redis pub/sub is at most once, so a listener is told (onGap; the delivery then has each socket
 *   replay from its cursor) whenever events of its user may have passed it by:
 *   - this node's subscriber connection came back after a drop, once its channels are subscribed again;
 *   - a PUBLISH of this node failed (Redis unreachable or stuck): the other nodes' subscribers of that user
 *     missed it, so once this node's command connection works again, a gap notice goes out on the user's
 *     channel before any later event of that user (same connection, so in that order), and every other
 *     node's listeners of the user get onGap (this node's own got the event directly);
 *   - gap(): the composition root says so for every listener (another node died: what it had committed and
 *     not published yet went nowhere).
 */
import { isRunEventEnvelope, type RunEventEnvelope } from '../../../protocol/events.js';
import { createBatchedSender } from '../../../protocol/ipc-batch.js';
import type { Redis } from 'ioredis';
import { messageOf } from '../../../protocol/errors.js';
import type { Logger } from '../../logger.js';
import { isRedisUnreachable, redisUnavailable } from '../../shared/redis/unavailable.js';
import type { BusListener, EventBus } from '../event-bus.js';
import type { SubscriberChannels, HeldChannel } from './subscriber-channels.js';

/** What goes on a user's channel: an event, or a gap notice, with the id of the node that sent it. */
type Wire = { n: string; e: RunEventEnvelope } | { n: string; gap: true };

export interface RedisEventBusOptions {
  /** The command connection: every PUBLISH goes out on it, in order. */
  publisher: Redis;
  channels: SubscriberChannels;
  /** REDIS_KEY_PREFIX: channels are `<prefix>user:<userId>`. */
  keyPrefix: string;
  nodeId: string;
  /** Connects the connections (shared with the other Redis parts; resolves once both are ready). */
  connect: () => Promise<void>;
  log: Logger;
}

export interface RedisEventBus extends EventBus {
  /** Tells every listener of this node that events may have been missed (another node died). */
  gap(): void;
}

interface User {
  listeners: Set<BusListener>;
  channel: HeldChannel;
}

export function createRedisEventBus(opts: RedisEventBusOptions): RedisEventBus {
  const { publisher, channels, nodeId, log } = opts;
  const channelOf = (userId: string) => `${opts.keyPrefix}user:${userId}`;
  const users = new Map<string, User>();
  /** Users an event of which this node could not PUBLISH: the others get a gap notice before the next one. */
  const unsent = new Set<string>();
  const gapNotice = JSON.stringify({ n: nodeId, gap: true } satisfies Wire);
  /** How every message this node sends begins: its own come back on the channels it holds, and are not parsed. */
  const ownPrefix = `{"n":${JSON.stringify(nodeId)},`;
  let stopped = false;

  const call = (listener: BusListener, what: 'onEvent' | 'onGap', e?: RunEventEnvelope) => {
    try {
      if (what === 'onEvent') listener.onEvent(e!);
      else listener.onGap();
    } catch (err) {
      log.error({ err }, `a bus listener's ${what} threw`);
    }
  };

  function gapFor(userId: string): void {
    for (const l of users.get(userId)?.listeners ?? []) call(l, 'onGap');
  }

  function receive(userId: string, raw: string): void {
    if (raw.startsWith(ownPrefix)) return;
    let msg: Partial<{ n: unknown; e: unknown; gap: unknown }>;
    try {
      msg = JSON.parse(raw);
    } catch {
      msg = {};
    }
    if (typeof msg?.n !== 'string') return void log.warn({ channel: channelOf(userId) }, 'bus: a message that is not ours, ignored');
    if (msg.n === nodeId) return;
    if (msg.gap === true) return gapFor(userId);
    const e = msg.e;
    if (!isRunEventEnvelope(e) || e.user_id !== userId) return void log.warn({ channel: channelOf(userId), from: msg.n }, 'bus: a malformed event, ignored');
    for (const l of users.get(userId)?.listeners ?? []) call(l, 'onEvent', e);
  }

  function lost(userId: string, err: unknown): void {
    if (stopped) return; // stopping: no gap notice can follow any more, so there is nothing to remember
    if (unsent.size === 0) log.warn({ err: String(err) }, 'bus: PUBLISH failed; the other nodes will be told to replay once Redis answers');
    unsent.add(userId);
  }

  /**
   * This turn's messages, in the order sent, leave together at its end, in one write: the connection's socket is
   * corked while they are sent. Each stays a PUBLISH of its own, not a pipeline: a connection lost before their
   * replies resends every unanswered command in order, where ioredis drops a pipeline's unanswered tail (its later
   * events would then reach the other nodes before the gap notice for the dropped ones).
   */
  const outbox = createBatchedSender<{ userId: string; message: string }>((batch, done) => {
    const socket = batch.length > 1 && publisher.status === 'ready' ? publisher.stream : null;
    socket?.cork();
    try {
      for (const { userId, message } of batch) publisher.publish(channelOf(userId), message).catch((err: unknown) => lost(userId, err));
    } finally {
      socket?.uncork();
    }
    done();
  });

  /** PUBLISHes on the user's channel at the end of this turn; a failure is remembered as a gap to announce. */
  function send(userId: string, message: string): void {
    outbox.send({ userId, message });
  }

  function announceGaps(): void {
    if (stopped || publisher.status !== 'ready') return;
    const pending = [...unsent];
    unsent.clear();
    for (const userId of pending) send(userId, gapNotice);
  }

  // The command connection is back: tell the other nodes what they missed meanwhile.
  publisher.on('ready', announceGaps);
  const offResubscribed = channels.onResubscribed(() => {
    for (const userId of users.keys()) gapFor(userId);
  });

  return {
    publish(envelope) {
      const userId = envelope.user_id;
      for (const l of users.get(userId)?.listeners ?? []) call(l, 'onEvent', envelope);
      if (stopped) return;
      // Checked before sending: with no offline queue, a PUBLISH now would only be refused.
      if (publisher.status !== 'ready') return lost(userId, `Redis connection ${publisher.status}`);
      if (unsent.delete(userId)) send(userId, gapNotice);
      send(userId, JSON.stringify({ n: nodeId, e: envelope } satisfies Wire));
    },
    async subscribe(userId, listener) {
      if (stopped) throw new Error('the event bus is stopped');
      let user = users.get(userId);
      if (!user) {
        user = { listeners: new Set(), channel: channels.hold(channelOf(userId), (m) => receive(userId, m)) };
        users.set(userId, user);
      }
      const mine = user;
      // A wrapper per subscription: the same listener subscribed twice is called twice, unsubscribed once each.
      const entry: BusListener = { onEvent: (e) => listener.onEvent(e), onGap: () => listener.onGap() };
      mine.listeners.add(entry);
      const unsubscribe = () => {
        if (!mine.listeners.delete(entry) || mine.listeners.size > 0 || users.get(userId) !== mine) return;
        users.delete(userId);
        mine.channel.release();
      };
      try {
        await mine.channel.subscribed;
      } catch (err) {
        // The next subscription of this user subscribes afresh rather than sharing the failure.
        if (users.get(userId) === mine) {
          users.delete(userId);
          mine.channel.release();
        }
        mine.listeners.delete(entry);
        // Redis down or the subscriber not back yet (it reconnects on its own, maybe after the command
        // connection): retryable, like everything else Redis is needed for.
        if (isRedisUnreachable(err)) throw redisUnavailable("this socket cannot follow its user's events across nodes; retry shortly");
        throw new Error(`cannot subscribe to the user's events (Redis): ${messageOf(err)}`);
      }
      return unsubscribe;
    },
    gap() {
      for (const userId of users.keys()) gapFor(userId);
    },
    async start() {
      await opts.connect();
    },
    async stop() {
      // What this turn published leaves before the connections close (their QUIT queues behind it).
      outbox.flush();
      stopped = true;
      offResubscribed();
      publisher.off('ready', announceGaps);
      for (const user of users.values()) user.channel.release();
      users.clear();
      unsent.clear();
    },
  };
}

/**
 * Node messages over Redis pub/sub: `<prefix>node:<nodeId>` for one node, `<prefix>nodes` for all. Both are
 * held on the node's subscriber connection from start() to stop(); sends go out on the command connection.
 * A message is `{from, msg}` JSON, refused unread over NODE_MESSAGE_MAX_BYTES and checked against NODE_MESSAGE;
 * a node ignores its own broadcasts.
 */
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Logger } from '../../logger.js';
import { NODE_MESSAGE, NODE_MESSAGE_MAX_BYTES, type NodeMessage, type NodeMessages } from '../node-messages.js';
import type { HeldChannel, SubscriberChannels } from './subscriber-channels.js';

const WIRE = z.object({ from: z.string().min(1).max(64), msg: NODE_MESSAGE });

export interface RedisNodeMessagesOptions {
  /** The command connection: sends go out on it. */
  publisher: Redis;
  channels: SubscriberChannels;
  keyPrefix: string;
  nodeId: string;
  /** Connects the connections (shared with the other Redis parts). */
  connect: () => Promise<void>;
  log: Logger;
}

export function createRedisNodeMessages(opts: RedisNodeMessagesOptions): NodeMessages {
  const { publisher, channels, nodeId, log } = opts;
  const nodeChannel = (id: string) => `${opts.keyPrefix}node:${id}`;
  const broadcastChannel = `${opts.keyPrefix}nodes`;
  const handlers = new Set<(message: NodeMessage, from: string) => void>();
  const held: HeldChannel[] = [];
  let offResubscribed: (() => void) | null = null;
  const gapHandlers = new Set<() => void>();

  function deliver(message: NodeMessage, from: string): void {
    for (const h of handlers) {
      try {
        h(message, from);
      } catch (err) {
        log.error({ err, type: message.type }, 'a node message handler threw');
      }
    }
  }

  function receive(raw: string): void {
    if (Buffer.byteLength(raw) > NODE_MESSAGE_MAX_BYTES) return void log.warn({ bytes: Buffer.byteLength(raw) }, 'node message over its size limit, ignored');
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = undefined;
    }
    const wire = WIRE.safeParse(parsed);
    if (!wire.success) return void log.warn({ issues: wire.error.issues.slice(0, 3) }, 'malformed node message, ignored');
    if (wire.data.from === nodeId) return;
    deliver(wire.data.msg, wire.data.from);
  }

  function encode(message: NodeMessage): string {
    const raw = JSON.stringify({ from: nodeId, msg: NODE_MESSAGE.parse(message) });
    if (Buffer.byteLength(raw) > NODE_MESSAGE_MAX_BYTES) throw new Error(`node message ${message.type} over ${NODE_MESSAGE_MAX_BYTES} bytes`);
    return raw;
  }

  return {
    async send(to, message) {
      const raw = encode(message);
      if (to === nodeId) {
        queueMicrotask(() => deliver(message, nodeId));
        return true;
      }
      return (await publisher.publish(nodeChannel(to), raw)) > 0;
    },
    async broadcast(message) {
      const received = await publisher.publish(broadcastChannel, encode(message));
      // This node hears its own broadcasts (and ignores them): not counted.
      return Math.max(0, received - (held.length > 0 ? 1 : 0));
    },
    onMessage(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    onGap(handler) {
      gapHandlers.add(handler);
      return () => gapHandlers.delete(handler);
    },
    async start() {
      await opts.connect();
      if (held.length > 0) return;
      held.push(channels.hold(nodeChannel(nodeId), receive), channels.hold(broadcastChannel, receive));
      offResubscribed = channels.onResubscribed(() => {
        for (const h of gapHandlers) h();
      });
      await Promise.all(held.map((h) => h.subscribed));
    },
    async stop() {
      offResubscribed?.();
      for (const h of held.splice(0)) h.release();
      handlers.clear();
      gapHandlers.clear();
    },
  };
}

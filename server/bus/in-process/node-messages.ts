/**
 * Node messages of a single node: a message to itself is a direct call (after the current turn, as a message
 * from Redis would arrive), a broadcast reaches no one, and nothing is ever missed.
 */
import type { Logger } from '../../logger.js';
import type { NodeMessage, NodeMessages } from '../node-messages.js';

export function createInProcessNodeMessages(nodeId: string, log: Logger): NodeMessages {
  const handlers = new Set<(message: NodeMessage, from: string) => void>();
  return {
    async send(to, message) {
      if (to !== nodeId) return false;
      queueMicrotask(() => {
        for (const h of handlers) {
          try {
            h(message, nodeId);
          } catch (err) {
            log.error({ err, type: message.type }, 'a node message handler threw');
          }
        }
      });
      return true;
    },
    async broadcast() {
      return 0;
    },
    onMessage(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    onGap() {
      return () => undefined;
    },
    async start() {},
    async stop() {
      handlers.clear();
    },
  };
}

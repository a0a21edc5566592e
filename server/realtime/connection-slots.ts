/**
 * Connection slots, claimed during the handshake rather than counted after it: socket.io runs a
 * handshake's middleware for every CONNECT packet (150 can arrive in one long-polling POST) before any of
 * them is connected, so a count of connected sockets lets a burst pass together. A slot is held from the
 * claim until the socket disconnects or its transport closes, whichever comes first.
 *
 * Two parts: one socket per engine.io connection, checked here (a connection lives on one node), and the
 * per-user and per-address caps, counted in the shared state (a user's sockets may be on several nodes).
 */
import { CodedError } from '../../protocol/errors.js';
import type { ConnectionCounts } from '../shared/shared-state.js';

/** The parts of an engine.io connection (socket.conn) a slot watches. */
export interface EngineLifecycle {
  readyState: string;
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

export function createConnectionSlots(counts: ConnectionCounts) {
  /** engine.io connections that already carry a socket (being handshaked or connected): one each. */
  const engines = new WeakSet<object>();

  return {
    /**
     * Claims a slot for socket `id` of `userId` from `ip` over the engine.io connection `engine`, or throws
     * (BAD_REQUEST for a second socket on one connection, RATE_LIMITED over a cap). Returns the release,
     * safe to call more than once; the slot is also released when `engine` closes.
     */
    async claim(id: string, userId: string, ip: string, engine: EngineLifecycle): Promise<() => void> {
      // Marked before the shared claim is awaited: other CONNECTs on this connection meanwhile are refused.
      if (engines.has(engine)) throw new CodedError('BAD_REQUEST', 'this connection already has a socket; open one socket per connection');
      if (engine.readyState !== 'open') throw new CodedError('BAD_REQUEST', 'the connection closed during the handshake');
      engines.add(engine);
      let releaseShared: (() => Promise<void>) | null = null;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        engine.off('close', release);
        engines.delete(engine);
        void releaseShared?.();
      };
      // Watched from before the await: a transport that closes meanwhile must not leave a count behind.
      engine.once('close', release);
      try {
        releaseShared = await counts.claim(id, userId, ip);
      } catch (err) {
        release();
        throw err;
      }
      if (released) {
        void releaseShared();
        throw new CodedError('BAD_REQUEST', 'the connection closed during the handshake');
      }
      return release;
    },
  };
}

export type ConnectionSlots = ReturnType<typeof createConnectionSlots>;

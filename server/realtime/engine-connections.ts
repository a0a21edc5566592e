/**
 * engine.io connections per client address, counted from the transport's handshake, before any token is seen.
 * MAX_CONNECTIONS_PER_IP counts sockets, claimed at the socket.io handshake (connection-slots.ts); an engine.io
 * session that never sends CONNECT is no socket, yet holds ~6 KB of the front's memory until it times out. So
 * every engine.io connection counts here from its handshake to its close, per address, and one that carries no
 * socket after the connect timeout, or that sends anything but CONNECT before its socket, is closed at once
 * (closeNow: a polling client that never polls again would otherwise keep it for engine.io's close timeout, a
 * WebSocket peer that reads nothing for ws's).
 *
 * Per node on purpose: the bound protects this node's memory, needs no round trip before authentication, and
 * the cluster-wide cap still holds for sockets.
 */
import type { IncomingMessage } from 'node:http';

/** The parts of an engine.io connection (io.engine's 'connection', socket.conn) this watches. */
export interface EngineConnection {
  readonly request: IncomingMessage;
  readonly readyState: string;
  once(event: 'close', listener: () => void): unknown;
  on(event: 'packet', listener: (packet: EnginePacket) => void): unknown;
  off(event: 'packet', listener: (packet: EnginePacket) => void): unknown;
  close(discard?: boolean): unknown;
}

/** An engine.io packet as its connection's 'packet' event gives it ('message' carries a socket.io packet). */
export interface EnginePacket {
  type: string;
  data?: unknown;
}

export interface EngineConnectionOptions {
  /** engine.io connections one address may hold open on this node. */
  maxPerAddress: number;
  /** How long a connection may go without a socket before it is closed. */
  connectTimeoutMs: number;
  /** The client address of a handshake request (TRUST_PROXY's rule). */
  addressOf: (req: Pick<IncomingMessage, 'headers' | 'socket'>) => string;
}

export function createEngineConnections(options: EngineConnectionOptions) {
  const open = new Map<string, number>();
  /** Connections that carry a socket: the connect timeout leaves them be. */
  const withSocket = new WeakSet<object>();
  /** The packet watch of each connection without a socket yet (see track), removed when its socket joins. */
  const watches = new WeakMap<object, (packet: EnginePacket) => void>();
  const refusal = `too many connections from this address (engine.io connections on this node, with a socket or not: at most ${options.maxPerAddress}, twice MAX_CONNECTIONS_PER_IP)`;

  return {
    /** For engine.io's allowRequest: why `req` may not open another connection, or null when it may. */
    refusal(req: Pick<IncomingMessage, 'headers' | 'socket'>): string | null {
      return (open.get(options.addressOf(req)) ?? 0) >= options.maxPerAddress ? refusal : null;
    },
    /**
     * Counts a new connection until it closes. Handshakes that passed `refusal` together (websocket upgrades
     * complete asynchronously) may go past the bound: those are closed at once.
     */
    track(conn: EngineConnection): void {
      const address = options.addressOf(conn.request);
      const count = (open.get(address) ?? 0) + 1;
      open.set(address, count);
      const timer = setTimeout(() => {
        if (!withSocket.has(conn)) closeNow(conn);
      }, options.connectTimeoutMs);
      timer.unref();
      conn.once('close', () => {
        clearTimeout(timer);
        const left = (open.get(address) ?? 1) - 1;
        if (left > 0) open.set(address, left);
        else open.delete(address);
      });
      if (count > options.maxPerAddress) return void closeNow(conn);
      // Before its socket, a client sends socket.io's CONNECT ("0…") and nothing else: socket.io drops anything
      // else unread, so a flood of it would cost the front its parsing until the connect timeout, for nothing.
      const watch = (packet: EnginePacket) => {
        if (packet.type === 'message' && !(typeof packet.data === 'string' && packet.data.startsWith('0'))) closeNow(conn);
      };
      conn.on('packet', watch);
      watches.set(conn, watch);
    },
    /** The connection carries a socket now (socket.io's 'connection'). */
    socketJoined(conn: EngineConnection): void {
      withSocket.add(conn);
      const watch = watches.get(conn);
      watches.delete(conn);
      if (watch) conn.off('packet', watch);
    },
    /** Open connections from `address` (for tests and the report). */
    openFrom(address: string): number {
      return open.get(address) ?? 0;
    },
  };
}

/**
 * Closes an engine.io connection at once, discarding what it holds. A connection that came in by a WebSocket
 * upgrade owns its TCP socket, which is destroyed too: a graceful WebSocket close waits up to 30 s (ws's close
 * timeout) for a peer that may never read it, reading and ignoring whatever it keeps sending meanwhile. A
 * long-polling connection's requests may share their TCP connection with others (keep-alive, a proxy), so only
 * the session is closed.
 */
export function closeNow(conn: Pick<EngineConnection, 'request' | 'close'>): void {
  conn.close(true);
  if (conn.request.headers.upgrade?.toLowerCase() === 'websocket') conn.request.socket.destroy();
}

export type EngineConnections = ReturnType<typeof createEngineConnections>;

/**
 * engine.io connections per client address, counted from the transport's handshake, before any token is seen.
 * MAX_CONNECTIONS_PER_IP counts sockets, claimed at the socket.io handshake (connection-slots.ts); an engine.io
 * session that never sends CONNECT is no socket, yet holds ~6 KB of the front's memory until it times out. So
 * every engine.io connection counts here from its handshake to its close, per address, and one that carries no
 * socket after the connect timeout, or that sends anything but CONNECT before its socket, is closed at once
 * (closeNow: a polling client that never polls again would otherwise keep it for engine.io's close timeout, a
 * WebSocket peer that reads nothing for ws's).
 *
 * What socket.io handles below Atoll's own gates is watched here too, before and after the socket joins (helper-77):
 * a CONNECT to a namespace that does not exist never reaches the sign-in middleware and is answered by socket.io
 * itself, and acknowledgements never reach the socket's flood guard, so one connection without a token sending
 * `40/x,` as fast as it could took 25 s of the front's CPU in 33 s (`/healthz` 5-10 s late for everyone); a binary
 * event announcing 10 attachments and sent 9 held 9 MiB per socket for as long as the socket lived. A connection
 * may send CONNECTs to `/` only (a few, of 16 KiB at most: a client whose CONNECT was refused tries again on the same connection), and
 * once its socket joined, events and its DISCONNECT only (a binary event of one attachment included, refused once
 * whole); the server asks no acknowledgement. Anything else closes it at once (packetWatch).
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
  /** A connection closed for a packet it may not send (`why`), to log. */
  onRefusedPacket?: (address: string, why: string) => void;
}

/** CONNECTs to `/` a connection may send before its socket joins (each refused one may be tried again). */
export const MAX_CONNECTS_BEFORE_SOCKET = 5;

/**
 * The longest CONNECT packet (`0{"token":…}`): a token must also fit an HTTP request's headers (Node's default
 * maxHeaderSize, 16 KiB). socket.io parsed whatever a CONNECT held and kept it as the socket's handshake.auth for
 * the socket's life: 90,000 keys beside a valid token held ~6 MiB per socket, 100 sockets of one address took the
 * front from 205 to 816 MB RSS (helper-86).
 */
export const MAX_CONNECT_CHARS = 16 * 1024;

/** Attachments one binary event may carry: its values are refused (BAD_REQUEST) once it is whole. */
const MAX_ATTACHMENTS = 1;

/**
 * Judges one connection's socket.io packets (engine.io messages' data): why each may not come from a client, or null
 * when it may. Before the socket: CONNECT to `/` only (`0`, or `0{` with its auth), a few. After: EVENT (`2`) and
 * DISCONNECT (`1`) to `/` (socket.io closes a connection sending to a namespace it did not join), and a binary event
 * (`5`) of one attachment followed by that attachment, which socket.io holds until the event is whole: the event
 * then gets its clear refusal (no value may be binary), and a connection can hold no more than one frame of it.
 */
function packetWatch(): (data: unknown, joined: boolean) => string | null {
  let connects = 0;
  let attachmentsDue = 0;
  return (data, joined) => {
    if (typeof data !== 'string') {
      if (!joined || attachmentsDue === 0) return 'a binary frame nothing announced';
      attachmentsDue--;
      return null;
    }
    if (attachmentsDue > 0) return 'a packet before the attachment its binary event announced';
    if (!joined) {
      if (data !== '0' && !data.startsWith('0{')) return data.startsWith('0') ? 'a CONNECT to another namespace than /' : 'a packet before CONNECT';
      if (data.length > MAX_CONNECT_CHARS) return `a CONNECT of more than ${MAX_CONNECT_CHARS} characters`;
      return ++connects > MAX_CONNECTS_BEFORE_SOCKET ? `more than ${MAX_CONNECTS_BEFORE_SOCKET} CONNECTs without a socket` : null;
    }
    const type = data.charAt(0);
    if (type === '2' || type === '1') return null;
    if (type === '5') {
      const announced = /^5(\d{1,6})-/.exec(data);
      if (!announced || Number(announced[1]) > MAX_ATTACHMENTS) return `a binary event of more than ${MAX_ATTACHMENTS} attachment`;
      attachmentsDue = Number(announced[1]);
      return null;
    }
    return type === '0' ? 'a CONNECT once its socket joined' : type === '3' || type === '6' ? 'an acknowledgement nothing asked for' : 'a packet of no client type';
  };
}

export function createEngineConnections(options: EngineConnectionOptions) {
  const open = new Map<string, number>();
  /** Connections that carry a socket: the connect timeout leaves them be. */
  const withSocket = new WeakSet<object>();
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
      // Seen before socket.io parses it: a packet closed on here costs no parsing, and holds nothing.
      const judge = packetWatch();
      conn.on('packet', (packet: EnginePacket) => {
        if (packet.type !== 'message' || conn.readyState === 'closed') return;
        const why = judge(packet.data, withSocket.has(conn));
        if (why === null) return;
        options.onRefusedPacket?.(address, why);
        closeNow(conn);
      });
    },
    /** The connection carries a socket now (socket.io's 'connection'). */
    socketJoined(conn: EngineConnection): void {
      withSocket.add(conn);
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

/** A bare socket.io client (no reconnection, its own connection) for tests of the handshake and its limits. */
import { io, type Socket } from 'socket.io-client';

/** The handshake's outcome, recorded from the socket's creation: a test may await other things before it asks. */
const OUTCOME = Symbol('handshake outcome');
type Recorded = Socket & { [OUTCOME]?: Promise<Error | null> };

/** `auth` is a token, or the whole handshake auth object (to send what a real client would not). */
export function rawSocket(url: string, auth: string | Record<string, unknown>, headers: Record<string, string> = {}): Socket {
  const socket: Recorded = io(url, { auth: typeof auth === 'string' ? { token: auth } : auth, transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders: headers });
  socket[OUTCOME] = new Promise((resolve) => {
    socket.once('connect', () => resolve(null));
    socket.once('connect_error', (err) => resolve(err));
  });
  return socket;
}

/**
 * Resolves with null once connected, or with the handshake's refusal. A socket made by rawSocket answers even if it
 * connected (or was refused) before this was called: the flooder test once waited 30 s for a `connect` that had
 * already fired while it logged in a second user.
 */
export function connected(socket: Socket): Promise<Error | null> {
  const recorded = (socket as Recorded)[OUTCOME];
  if (recorded) return recorded;
  if (socket.connected) return Promise.resolve(null);
  return new Promise((resolve) => {
    socket.once('connect', () => resolve(null));
    socket.once('connect_error', (err) => resolve(err));
  });
}

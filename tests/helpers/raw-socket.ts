/** A bare socket.io client (no reconnection, its own connection) for tests of the handshake and its limits. */
import { io, type Socket } from 'socket.io-client';

/** `auth` is a token, or the whole handshake auth object (to send what a real client would not). */
export function rawSocket(url: string, auth: string | Record<string, unknown>, headers: Record<string, string> = {}): Socket {
  return io(url, { auth: typeof auth === 'string' ? { token: auth } : auth, transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders: headers });
}

/** Resolves with null once connected, or with the handshake's refusal. */
export function connected(socket: Socket): Promise<Error | null> {
  return new Promise((resolve) => {
    socket.once('connect', () => resolve(null));
    socket.once('connect_error', (err) => resolve(err));
  });
}

/**
 * Tokens that live longer than a Node timer can wait (2^31-1 ms, ~24.8 days; AUTH_MAX_TOKEN_LIFETIME_S may be a
 * year): their socket's expiry timer used to fire after 1 ms, dropping the socket at once. Now it waits in steps
 * (server/realtime/timeout-at.ts) and the socket stays.
 */
import jwt from 'jsonwebtoken';
import { sleep } from './helpers/client';
import { connected, rawSocket } from './helpers/raw-socket';
import { startServer, type TestServer } from './helpers/server';

const SECRET = 'test-secret-test-secret-test-secret'; // startServer's AUTH_JWT_SECRET
const DAY_S = 86_400;
const token = (user: string, days: number) => jwt.sign({}, SECRET, { algorithm: 'HS256', subject: user, expiresIn: days * DAY_S });

describe('tokens living longer than a Node timer can wait', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ CELLS: '1', THREADS_PER_CELL: '1', AUTH_MAX_TOKEN_LIFETIME_S: String(365 * DAY_S), SHUTDOWN_GRACE_MS: '0' });
  });
  afterAll(() => server.stop());

  test('a socket with a 30-day token stays connected, unwarned; refreshed to a 300-day one, it still does', async () => {
    const socket = rawSocket(server.url, token('long-lived', 30));
    const heard: string[] = [];
    // Listen before connecting: an expiry that fires at once does so right after the handshake.
    for (const name of ['token_expiring', 'unauthorized', 'disconnect'] as const) socket.on(name as any, () => heard.push(name));
    try {
      expect(await connected(socket)).toBeNull();
      // Nothing can come here but a wrongly armed timer: a second is ample for one that fires after 1 ms.
      await sleep(1500);
      expect(heard).toEqual([]);
      expect(socket.connected).toBe(true);
      const refreshed = await socket.timeout(10_000).emitWithAck('refresh_token', { token: token('long-lived', 300) });
      expect(Date.parse(refreshed.expires_at)).toBeGreaterThan(Date.now() + 299 * DAY_S * 1000);
      await sleep(1500);
      expect(heard).toEqual([]);
      expect(socket.connected).toBe(true);
      expect((await socket.timeout(10_000).emitWithAck('no_such_event' as any, {})).error).toMatchObject({ code: 'BAD_REQUEST' });
    } finally {
      socket.close();
    }
  }, 60_000);
});

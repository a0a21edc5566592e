/**
 * One signed-in socket flooding tiny messages: each refused message used to go through the whole pipeline and
 * get a reply, and the socket was never dropped, so one flooder held up the front for every user. Now a socket
 * that keeps sending past a burst of RATE_LIMITED refusals (or with too many messages waiting for admission) is
 * told `closing` (RATE_LIMITED, retry_after_ms) and disconnected; a client that waits its refusals out is not.
 * The per-address budget is raised here so the flooder's user budget is what refuses it, and the other user,
 * from the same address, is judged on being served, not on latency.
 */
import type { Socket } from 'socket.io-client';
import { eventually, sleep } from './helpers/client';
import { connected, rawSocket } from './helpers/raw-socket';
import { startServer, type TestServer } from './helpers/server';
import { devLogin } from './helpers/client';

/** server/realtime/flood-guard.ts's SOCKET_FLOOD_LIMITS.maxRefusals: refusals a socket gets before it is cut off. */
const MAX_REFUSALS = 200;

describe('a socket flooding messages', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ CELLS: '1', THREADS_PER_CELL: '1', RATE_LIMIT_USER_PER_SEC: '20', RATE_LIMIT_USER_BURST: '40', SHUTDOWN_GRACE_MS: '0' });
  });
  afterAll(() => server.stop());

  test('is disconnected after at most MAX_REFUSALS refusals, told why; another user is served throughout', async () => {
    const flooder = rawSocket(server.url, await devLogin(server.url, 'flooder'));
    const victimToken = await devLogin(server.url, 'victim');
    const victim = rawSocket(server.url, victimToken);
    try {
      const within = (p: Promise<Error | null>) => Promise.race([p, sleep(30_000).then(() => new Error('not connected within 30 s'))]);
      expect(await within(connected(flooder))).toBeNull();
      expect(await within(connected(victim))).toBeNull();
      const refusals: Record<string, number> = {};
      let closing: any = null;
      let disconnected = false;
      flooder.on('request_error', (p: any) => void (refusals[p.error.code] = (refusals[p.error.code] ?? 0) + 1));
      flooder.on('closing' as any, (p: any) => void (closing = p));
      flooder.on('disconnect', () => void (disconnected = true));

      // The other user asks all along, one request at a time (each may take as long as it must, up to 30 s: an
      // answer that never comes is recorded as such rather than hanging the test).
      const victimStatuses: (number | string)[] = [];
      let flooding = true;
      const victimLoop = (async () => {
        while (flooding) {
          const answer = await fetch(`${server.url}/v1/threads`, { headers: { authorization: `Bearer ${victimToken}` }, signal: AbortSignal.timeout(30_000) }).then(
            async (res) => (await res.text(), res.status),
            (err: Error) => `no answer: ${err.name}`,
          );
          victimStatuses.push(answer);
          await sleep(100);
        }
      })();

      // Tiny messages without acks, as fast as the client sends them, until the server cuts it off: 40 admitted and
      // 200 refused are enough, 20,000 leave room for the ones on their way (and keep this client, on a machine as
      // busy as CI's, from spending the test's time encoding packets).
      let sent = 0;
      while (!disconnected && sent < 20_000) {
        for (let i = 0; i < 2000; i++) flooder.emit('x' as any);
        sent += 2000;
        await new Promise((r) => setImmediate(r));
      }
      expect(await eventually(() => disconnected, 30_000)).toBe(true);
      flooding = false;
      await victimLoop;

      expect(closing).toMatchObject({ error: { code: 'RATE_LIMITED', message: expect.stringMatching(/disconnected/), retry_after_ms: expect.any(Number) } });
      expect(refusals.RATE_LIMITED ?? 0).toBeLessThanOrEqual(MAX_REFUSALS);
      // The burst's admitted messages are unknown events; nothing else came back.
      expect(Object.keys(refusals).filter((c) => c !== 'RATE_LIMITED' && c !== 'BAD_REQUEST')).toEqual([]);
      expect(victimStatuses.length).toBeGreaterThan(0);
      expect(victimStatuses.every((s) => s === 200)).toBe(true);
      // The other user's socket still answers.
      expect((await victim.timeout(10_000).emitWithAck('no_such_event' as any, {})).error).toMatchObject({ code: 'BAD_REQUEST' });
      expect(server.logs.some((l) => l.msg === 'socket flooding; disconnected' && l.user_id === 'flooder')).toBe(true);
    } finally {
      flooder.close();
      victim.close();
    }
  }, 150_000);

  test('a client that sends a burst and waits out its refusals is not disconnected', async () => {
    const socket: Socket = rawSocket(server.url, await devLogin(server.url, 'patient'));
    try {
      expect(await connected(socket)).toBeNull();
      let pending = Array.from({ length: 100 }, () => ({ thread_id: 'nope' }));
      let refused = 0;
      for (let round = 0; pending.length > 0 && round < 20; round++) {
        const acks = await Promise.all(pending.map((p) => socket.timeout(10_000).emitWithAck('get_thread_history', p)));
        const limited = acks.filter((a: any) => a.error?.code === 'RATE_LIMITED');
        refused += limited.length;
        pending = pending.slice(0, limited.length);
        if (limited.length) await sleep(Math.max(...limited.map((a: any) => a.error.retry_after_ms)));
      }
      expect(refused).toBeGreaterThan(0);
      expect(pending).toEqual([]);
      expect(socket.connected).toBe(true);
    } finally {
      socket.close();
    }
  }, 90_000);
});

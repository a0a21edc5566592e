/** Users never see each other: events go to the owner's room only; every foreign id answers 404/NOT_FOUND. */
import jwt from 'jsonwebtoken';
import { io } from 'socket.io-client';
import { startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

let server: TestServer;
let alice: UserClient;
let bob: UserClient;
let alice2: UserClient;

beforeAll(async () => {
  server = await startServer({});
  [alice, bob, alice2] = await Promise.all([UserClient.connect(server.url, 'alice'), UserClient.connect(server.url, 'bob'), UserClient.connect(server.url, 'alice')]);
});
afterAll(async () => {
  [alice, bob, alice2].forEach((c) => c.close());
  await server.stop();
});

test('user B receives none of user A\'s events; both of A\'s sockets receive all of them', async () => {
  const runs = await Promise.all([0, 1, 2, 3, 4].map((i) => alice.start({ agent: 'echo', input: `secret ${i}` })));
  const mine = await bob.start({ agent: 'echo', input: 'bob here' });
  for (const r of runs) await alice.waitForRun(r.run_id);
  await bob.waitForRun(mine.run_id);
  for (const r of runs) await alice2.waitForRun(r.run_id);
  expect(bob.events.length).toBeGreaterThan(0);
  expect(bob.events.every((e) => e.user_id === 'bob')).toBe(true);
  expect(alice.events.every((e) => e.user_id === 'alice')).toBe(true);
  for (const r of runs) expect(alice2.runEvents(r.run_id)).toEqual(alice.runEvents(r.run_id));
  expect(JSON.stringify(bob.events)).not.toContain('secret');
});

test('B gets 404 for A\'s thread, messages, run, events and cancel', async () => {
  const { run_id, thread_id } = await alice.start({ agent: 'echo', input: 'private' });
  await alice.waitForRun(run_id);
  const probes: [string, string, unknown?][] = [
    ['GET', `/v1/threads/${thread_id}/messages`],
    ['POST', `/v1/threads/${thread_id}/runs`, { agent: 'echo', input: 'x' }],
    ['GET', `/v1/runs/${run_id}`],
    ['GET', `/v1/runs/${run_id}/events`],
    ['POST', `/v1/runs/${run_id}/cancel`],
  ];
  for (const [method, path, body] of probes) {
    const foreign = await bob.http(method, path, body);
    const unknown = await bob.http(method, path.replace(/[0-9a-f-]{36}/, '00000000-0000-0000-0000-000000000000'), body);
    expect([method, path, foreign.status]).toEqual([method, path, 404]);
    expect(foreign.body).toEqual(unknown.body); // indistinguishable from an unknown id
    expect(foreign.body.error.code).toBe('NOT_FOUND');
  }
  expect((await bob.http('GET', '/v1/threads')).body.threads.map((t: any) => t.id)).not.toContain(thread_id);
});

test('start_agent on another user\'s thread is NOT_FOUND, and a spoofed user_id is ignored', async () => {
  const { run_id, thread_id } = await alice.start({ agent: 'echo', input: 'mine' });
  await alice.waitForRun(run_id);
  expect(await bob.ack('start_agent', { agent: 'echo', input: 'intrude', thread_id })).toEqual({ error: { code: 'NOT_FOUND', message: 'no such thread' } });
  const spoof = await bob.start({ agent: 'echo', input: 'spoof', user_id: 'alice' });
  const events = await bob.waitForRun(spoof.run_id);
  expect(events.every((e) => e.user_id === 'bob')).toBe(true);
  expect(alice.runEvents(spoof.run_id)).toHaveLength(0);
  expect((await alice.http('GET', `/v1/runs/${spoof.run_id}`)).status).toBe(404);
  expect(terminal(events).payload.final_response).toBe('spoof');
});

test('the handshake refuses missing, malformed and wrongly signed tokens', async () => {
  const bad = [undefined, 'not-a-jwt', jwt.sign({}, 'another-secret-another-secret', { subject: 'alice' }), jwt.sign({}, 'test-secret-test-secret-test-secret', { subject: 'alice', expiresIn: -10 })];
  for (const token of bad) {
    const socket = io(server.url, { auth: token ? { token } : {}, transports: ['websocket'], reconnection: false, forceNew: true });
    const err = await new Promise<any>((resolve) => {
      socket.once('connect', () => resolve(null));
      socket.once('connect_error', resolve);
    });
    socket.close();
    expect(err).not.toBeNull();
    expect(err.message).toBe('UNAUTHORIZED');
    expect(err.data.code).toBe('UNAUTHORIZED');
  }
});

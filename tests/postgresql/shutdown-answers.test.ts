/**
 * A stopping node answers what its sockets already sent before it closes them (server/atoll.ts): a request whose
 * answer is a database round trip away when SIGTERM comes is answered, not cut off by the close. The database is
 * frozen while the request waits on it (a TCP proxy stops forwarding), SIGTERM arrives, and the database comes back
 * a moment later: before, the node closed its sockets at once and the client's ack failed with "disconnected".
 */
import { UserClient } from '../helpers/client';
import { testDatabase, type TestDatabase } from '../helpers/pg-database';
import { FIXTURE_AGENTS, startServer, type TestServer } from '../helpers/server';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';

let db: TestDatabase;
let proxy: TcpProxy;
let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  db = await testDatabase('shutdown-answers');
  proxy = await startTcpProxy(5432);
  server = await startServer({ DATABASE_URL: db.urlVia(proxy.port), AGENTS_DIR: FIXTURE_AGENTS, CELLS: '1', THREADS_PER_CELL: '1' });
  user = await UserClient.connect(server.url, 'shutdown-answers');
}, 60_000);
afterAll(async () => {
  proxy?.restore();
  user?.close();
  await server?.stop();
  await proxy?.close();
  await db?.drop();
});

test('a request waiting on the database when SIGTERM comes is answered before the sockets close', async () => {
  const thread = await user.http('POST', '/v1/threads', { title: 'asked as the node stops' });
  expect(thread.status).toBe(201);
  proxy.freeze();
  const answer = user.ack('get_thread_history', { thread_id: thread.body.id }).then(
    (a) => ({ a }),
    (e) => ({ e: String(e) }),
  );
  // The request reaches the node and waits on the frozen database (a moment; this waits far longer, for busy machines).
  await new Promise((r) => setTimeout(r, 1500));
  const stopped = server.stop();
  // Back as soon as the node says it is stopping: within the second a stopping node gives what its sockets sent,
  // counted on its clock, not this process's. Without that second it closes its sockets a few ms after saying so.
  while (!server.logs.some((l) => l.msg === 'shutting down')) await new Promise((r) => setTimeout(r, 5));
  proxy.restore();
  expect(await answer).toEqual({ a: { thread_id: thread.body.id, messages: [], next_after: null } });
  expect(await stopped).toBe(0);
}, 60_000);

/**
 * A request body is parsed only for whom it is meant (helper-86): express.json ran for every request, before the
 * token was looked at, so a client without one made the front parse 119 KB of 10,000 values (~12 ms of CPU) for
 * each 401, 50 a second per address. Now /v1's bodies are parsed once the user is signed in and within their
 * budget, and the dev login's once dev login is allowed.
 */
import fs from 'node:fs';
import http from 'node:http';
import { startServer, type TestServer } from './helpers/server';

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ CELLS: '1', THREADS_PER_CELL: '1', RATE_LIMIT_IP_PER_SEC: '50', RATE_LIMIT_IP_BURST: '100' });
});
afterAll(async () => {
  await server?.stop();
});

const cpuMs = (pid: number): number => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
};

function post(agent: http.Agent, path: string, body: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(`${server.url}${path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

const wide = JSON.stringify(Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, [0]])));

/** Waits (up to 15 s) until the front spends under 20 ms of CPU in 250 ms: what it still does after start-up (on PostgreSQL ~300 ms more) is not the requests'. */
async function frontAtRest(pid: number): Promise<void> {
  for (let i = 0; i < 60; i++) {
    const before = cpuMs(pid);
    await new Promise((r) => setTimeout(r, 250));
    if (cpuMs(pid) - before < 20) return;
  }
}

test('100 requests without a token, each with 10,000 values in its body: 401 each, their bodies unparsed', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  try {
    await frontAtRest(server.proc.pid!);
    const before = cpuMs(server.proc.pid!);
    const statuses = await Promise.all(Array.from({ length: 100 }, () => post(agent, '/v1/threads', wide)));
    const spent = cpuMs(server.proc.pid!) - before;
    process.stdout.write(`100 unauthenticated wide bodies: front CPU ${spent} ms\n`);
    expect(statuses.every((s) => s === 401)).toBe(true);
    // Parsed, they cost 1,170-1,640 ms; unparsed, ~150-300 ms (the requests themselves).
    expect(spent).toBeLessThan(700);
  } finally {
    agent.destroy();
  }
}, 60_000);

test('a body for a signed-in user is still parsed: malformed JSON is BAD_REQUEST, a valid one is taken', async () => {
  const agent = new http.Agent({ keepAlive: false });
  const login = await fetch(`${server.url}/v1/auth/dev-login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user_id: 'body-user' }) });
  const { token } = (await login.json()) as { token: string };
  expect(await post(agent, '/v1/threads', '{"title": ', { authorization: `Bearer ${token}` })).toBe(400);
  expect(await post(agent, '/v1/threads', JSON.stringify({ title: 'fine' }), { authorization: `Bearer ${token}` })).toBe(201);
});

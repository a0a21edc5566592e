/**
 * METRICS_TOKEN: /metrics answers only a request carrying it (Prometheus's `authorization` setting, the /ops page
 * once given it); unset, it answers everyone, and a production node listening beyond loopback says so at start.
 * The metrics token is not a user's token, nor the other way round.
 */
import { devLogin, eventually } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

const TOKEN = 'metrics-token-0123456789-abcdef';

const scrape = (server: TestServer, authorization?: string) =>
  fetch(`${server.url}/metrics`, { headers: authorization ? { authorization } : {} }).then(async (res) => ({
    status: res.status,
    challenge: res.headers.get('www-authenticate'),
    body: await res.text(),
  }));

describe('with METRICS_TOKEN', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ CELLS: '1', THREADS_PER_CELL: '1', METRICS_TOKEN: TOKEN });
  });
  afterAll(() => server.stop());

  test('/metrics answers the token and refuses anything else with UNAUTHORIZED and a Bearer challenge', async () => {
    const ok = await scrape(server, `Bearer ${TOKEN}`);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatch(/^atoll_cells_alive/m);
    expect((await scrape(server, `bearer ${TOKEN}`)).status).toBe(200);

    const userToken = await devLogin(server.url, 'alice');
    for (const authorization of [undefined, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, `Bearer ${TOKEN} ${TOKEN}`, `Bearer ${userToken}`]) {
      const refused = await scrape(server, authorization);
      expect({ authorization, status: refused.status }).toEqual({ authorization, status: 401 });
      expect(refused.challenge).toBe('Bearer realm="metrics"');
      expect(JSON.parse(refused.body).error).toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringMatching(/metrics token/) });
      expect(refused.body).not.toContain('atoll_');
    }
    // The metrics token opens nothing else.
    const api = await fetch(`${server.url}/v1/threads`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(api.status).toBe(401);
    expect(server.logs.find((l) => l.msg === 'listening')).toMatchObject({ metrics: 'token' });
  });
});

describe('without METRICS_TOKEN', () => {
  test('/metrics answers everyone; a production node on a public address warns at start, one on loopback does not', async () => {
    const env = { CELLS: '1', THREADS_PER_CELL: '1', NODE_ENV: 'production', AUTH_DEV_LOGIN: '' };
    const [open, local] = await Promise.all([startServer({ ...env, HOST: '0.0.0.0' }), startServer({ ...env, HOST: '127.0.0.1' })]);
    try {
      for (const server of [open, local]) expect((await scrape(server)).status).toBe(200);
      const warned = (server: TestServer) => server.logs.some((l) => l.level === 40 && /METRICS_TOKEN/.test(String(l.msg)));
      expect(await eventually(() => warned(open), 10_000)).toBe(true);
      expect(open.logs.find((l) => l.msg === 'listening')).toMatchObject({ metrics: 'open' });
      expect(warned(local)).toBe(false);
    } finally {
      await Promise.all([open.stop(), local.stop()]);
    }
  });
});

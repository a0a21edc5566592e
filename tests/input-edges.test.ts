/**
 * Every bad input gets a clear, documented error and nothing is lost: binary values, oversized socket
 * messages, body-parser failures, tokens that never expire, foreign origins, and configuration mistakes
 * (without ever echoing a secret).
 */
import jwt from 'jsonwebtoken';
import http from 'node:http';
import zlib from 'node:zlib';
import { runServerOnce, startServer, type TestServer } from './helpers/server';
import { UserClient, devLogin, httpCall } from './helpers/client';
import { rawSocket as socketWith, connected } from './helpers/raw-socket';

const SECRET = 'test-secret-test-secret-test-secret';



describe('configuration errors', () => {
  test('a bad secret is named, never echoed', async () => {
    const secret = 'short-s3cr3t';
    const { code, stderr } = await runServerOnce({ AUTH_JWT_SECRET: secret });
    expect(code).toBe(2);
    expect(stderr).toMatch(/AUTH_JWT_SECRET: must be at least 16 characters \(value hidden/);
    expect(stderr).not.toContain(secret);
  });

  test('NODE_ENV is compared case-insensitively and unknown values are refused', async () => {
    // "Production" is production: it requires AUTH_JWT_SECRET.
    const prod = await runServerOnce({ NODE_ENV: 'Production' });
    expect(prod.code).toBe(2);
    expect(prod.stderr).toMatch(/AUTH_JWT_SECRET: required when NODE_ENV=production/);
    const odd = await runServerOnce({ NODE_ENV: 'staging' });
    expect(odd.code).toBe(2);
    expect(odd.stderr).toMatch(/NODE_ENV: must be development, production or test/);
  });

  test('CORS_ORIGINS must be a list of origins', async () => {
    const { code, stderr } = await runServerOnce({ CORS_ORIGINS: 'https://ok.example, https://bad.example/path' });
    expect(code).toBe(2);
    expect(stderr).toMatch(/CORS_ORIGINS/);
  });
});

describe('a live server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ CORS_ORIGINS: 'http://app.example', AUTH_MAX_TOKEN_LIFETIME_S: '3600' });
  });
  afterAll(() => server.stop());

  test('tokens without exp, living longer than AUTH_MAX_TOKEN_LIFETIME_S, or issued in the future, are refused on HTTP and sockets', async () => {
    const forever = jwt.sign({}, SECRET, { algorithm: 'HS256', subject: 'eternal' });
    const tooLong = jwt.sign({}, SECRET, { algorithm: 'HS256', subject: 'eternal', expiresIn: 7200 });
    const fine = jwt.sign({}, SECRET, { algorithm: 'HS256', subject: 'eternal', expiresIn: 3000 });
    // exp - iat within the cap, but only because iat is in the future: exp is ten years away.
    const inTenYears = Math.floor(Date.now() / 1000) + 10 * 365 * 86_400;
    const futureIat = jwt.sign({ iat: inTenYears - 60, exp: inTenYears }, SECRET, { algorithm: 'HS256', subject: 'eternal' });
    const farOff = jwt.sign({ iat: 1e300, exp: 1e300 }, SECRET, { algorithm: 'HS256', subject: 'eternal' });
    for (const [token, why] of [[forever, /no exp/], [tooLong, /AUTH_MAX_TOKEN_LIFETIME_S/], [futureIat, /issued in the future/], [farOff, /issued in the future/]] as const) {
      const res = await httpCall(server.url, 'GET', '/v1/threads', undefined, token);
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringMatching(why) });
      const s = socketWith(server.url, { token });
      expect(((await connected(s)) as any)?.data).toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringMatching(why) });
      s.close();
    }
    expect((await httpCall(server.url, 'GET', '/v1/threads', undefined, fine)).status).toBe(200);
  });

  test('binary inside input is refused at the edge with BAD_REQUEST; a message over MAX_INPUT_BYTES gets PAYLOAD_TOO_LARGE and the socket stays', async () => {
    const u = await UserClient.connect(server.url, 'binary');
    const binary = await u.ack('start_agent', { agent: 'echo', input: { text: 'x', blob: Buffer.from('abc') } });
    expect(binary.error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/binary value at .*input\.blob/) });
    // 70 KB: over MAX_INPUT_BYTES (64 KiB), under the transport cap (208 KiB: protocol/requests.ts messageCap).
    const big = await u.ack('start_agent', { agent: 'echo', input: 'x'.repeat(70_000) });
    expect(big.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', message: expect.stringMatching(/MAX_INPUT_BYTES/) });
    expect(u.socket.connected).toBe(true);
    const ok = await u.start({ agent: 'echo', input: 'after' });
    await u.waitForRun(ok.run_id);
    u.close();
  });

  test('body-parser errors are coded with their status, answered with nosniff and no-store, never logged as errors', async () => {
    const token = await devLogin(server.url, 'bodies');
    const post = (headers: Record<string, string>, body: string | Uint8Array) =>
      fetch(`${server.url}/v1/threads`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers }, body: body as unknown as string });
    const cases: [Promise<Response>, number, string][] = [
      [post({ 'content-encoding': 'compress' }, '{}'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [post({ 'content-type': 'application/json; charset=koi8-r' }, '{}'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [post({}, '{"title": '), 400, 'BAD_REQUEST'],
      [post({}, JSON.stringify({ title: 'x'.repeat(300_000) })), 413, 'PAYLOAD_TOO_LARGE'],
      [post({ 'content-encoding': 'gzip' }, new Uint8Array(zlib.gzipSync('{"title":"zipped"}'))), 201, ''],
    ];
    for (const [pending, status, code] of cases) {
      const res = await pending;
      const body = (await res.json()) as any;
      expect([status, code ? body.error?.code : '']).toEqual([res.status, code]);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('cache-control')).toBe('no-store');
    }
    expect(server.logs.filter((l) => (l.level as number) >= 50)).toEqual([]);
  });

  test('a path parameter that is not valid percent-encoding: 400 BAD_REQUEST, one info line, never an error', async () => {
    const token = await devLogin(server.url, 'escapes');
    const paths: [string, string][] = [
      ['GET', '/v1/runs/%ZZ'],
      ['GET', '/v1/runs/%ZZ/events'],
      ['POST', '/v1/runs/%E0%A4%A/cancel'],
      ['GET', '/v1/threads/%E0%A4%A/messages'],
      ['POST', '/v1/threads/%ZZ/runs'],
    ];
    for (const [method, path] of paths) {
      // fetch sends the path as written: the URL parser leaves a malformed escape alone.
      const res = await fetch(server.url + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: method === 'POST' ? '{}' : undefined });
      const body = (await res.json()) as any;
      expect([path, res.status, body.error?.code]).toEqual([path, 400, 'BAD_REQUEST']);
      expect(body.error.message).toMatch(/percent-encoding/);
    }
    const refused = server.logs.filter((l) => l.msg === 'refused malformed request' && l.status === 400);
    expect(refused.length).toBeGreaterThanOrEqual(paths.length);
    expect(refused.every((l) => l.level === 30)).toBe(true);
    expect(server.logs.filter((l) => (l.level as number) >= 50)).toEqual([]);
  });

  test('origins: same origin and CORS_ORIGINS are allowed (CORS headers), any other origin is refused on HTTP and at the handshake', async () => {
    const token = await devLogin(server.url, 'origins');
    const get = (origin: string) => fetch(`${server.url}/v1/threads`, { headers: { authorization: `Bearer ${token}`, origin } });
    const same = await get(server.url);
    expect(same.status).toBe(200);
    const allowed = await get('http://app.example');
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get('access-control-allow-origin')).toBe('http://app.example');
    const preflight = await fetch(`${server.url}/v1/threads`, { method: 'OPTIONS', headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/authorization/);
    const foreign = await get('http://evil.example');
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
    expect(((await foreign.json()) as any).error).toMatchObject({ code: 'FORBIDDEN', message: expect.stringMatching(/CORS_ORIGINS/) });

    const evil = socketWith(server.url, { token }, { origin: 'http://evil.example' });
    expect(await connected(evil)).not.toBeNull();
    evil.close();
    // The transport's own handshake is what refuses it, before any token is read: HTTP 403 naming the setting.
    const polling = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, { headers: { origin: 'http://evil.example' } });
    expect({ status: polling.status, body: await polling.text() }).toEqual({ status: 403, body: expect.stringMatching(/CORS_ORIGINS/) });
    for (const origin of ['http://app.example', server.url]) {
      const good = socketWith(server.url, { token }, { origin });
      expect(await connected(good)).toBeNull();
      good.close();
    }
  });

  // DNS rebinding: a page of any site can have its name resolve to this server; its requests carry that name as Host
  // and as Origin, so they pass as same-origin. With dev login (npm start's default) it minted tokens (helper-77).
  test('dev login answers only requests addressed to localhost, an IP address or a CORS_ORIGINS host', async () => {
    const port = new URL(server.url).port;
    const login = (host: string) =>
      new Promise<{ status: number; body: { token?: string; error?: { code: string } } }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/v1/auth/dev-login', method: 'POST', headers: { host, origin: `http://${host}`, 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d)).on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ user_id: 'alice' }));
      });
    const rebound = await login(`rebind.attacker.example:${port}`);
    expect(rebound).toMatchObject({ status: 403, body: { error: { code: 'FORBIDDEN' } } });
    expect(rebound.body.token).toBeUndefined();
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'app.example']) expect({ host, status: (await login(host)).status }).toEqual({ host, status: 200 });
  });
});

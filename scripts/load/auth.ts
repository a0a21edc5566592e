/** A user's token (dev login or signed with the server's secret), and HTTP reads that respect the server's limits. */
import jwt from 'jsonwebtoken';

const POLITE_ATTEMPTS = 5;
const MAX_WAIT_S = 10;

/**
 * fetch that honours RATE_LIMITED (429) and OVERLOADED (503): it waits the Retry-After the server asked for,
 * a bounded number of times. Many users behind one address meet the server's per-address limit by design.
 */
async function fetchPolitely(url: string, init: RequestInit, timeoutMs: number): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    if ((res.status !== 429 && res.status !== 503) || attempt >= POLITE_ATTEMPTS) return res;
    await res.arrayBuffer();
    const seconds = Number(res.headers.get('retry-after'));
    await new Promise((r) => setTimeout(r, Math.min(MAX_WAIT_S, Number.isFinite(seconds) && seconds > 0 ? seconds : 1) * 1000));
  }
}

export async function userToken(url: string, userId: string, jwtSecret: string | null, timeoutMs: number): Promise<string> {
  if (jwtSecret) return jwt.sign({}, jwtSecret, { algorithm: 'HS256', subject: userId, expiresIn: '12h' });
  const res = await fetchPolitely(
    `${url}/v1/auth/dev-login`,
    { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user_id: userId }) },
    timeoutMs,
  );
  if (res.status === 403) throw new Error('the server refuses dev login (AUTH_DEV_LOGIN is off): pass --jwt-secret with its AUTH_JWT_SECRET');
  if (res.status !== 200) throw new Error(`dev login failed: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  return ((await res.json()) as { token: string }).token;
}

/** GET with a bearer token, a time bound and Retry-After honoured; returns the parsed JSON body. */
export async function getJson(url: string, path: string, token: string | null, timeoutMs: number): Promise<{ status: number; body: any }> {
  const res = await fetchPolitely(url + path, { headers: token ? { authorization: `Bearer ${token}` } : {} }, timeoutMs);
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

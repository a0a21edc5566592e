/**
 * A password in a URL's query string is as much a password as the one in its userinfo: pg and ioredis both
 * connect with it, so every place that shows DATABASE_URL or REDIS_URL (logs, start-up errors, configuration
 * errors) masks it too.
 */
import { parse as parsePg } from 'pg-connection-string';
import { parseURL as parseRedisUrl } from 'ioredis/built/utils/index.js';
import { ConfigError, loadConfig } from '../../server/config';
import { maskPassword, parseDatabaseUrl } from '../../server/store/database-target';

const SECRET = 'S3cretPass';

describe('a password in the query string is a password', () => {
  test('pg and ioredis both use it (so the form is a working configuration)', () => {
    expect(parsePg(`postgresql://127.0.0.1:5432/atoll?user=atoll&password=${SECRET}`).password).toBe(SECRET);
    expect((parseRedisUrl(`redis://127.0.0.1:6379/0?password=${SECRET}`) as { password?: string }).password).toBe(SECRET);
    // The name as the clients read it: percent-decoded.
    expect(parsePg(`postgresql://127.0.0.1:5432/atoll?pass%77ord=${SECRET}`).password).toBe(SECRET);
  });

  test.each([
    `postgresql://127.0.0.1:5432/atoll?user=atoll&password=${SECRET}`,
    `postgres://db.internal/atoll?sslmode=require&password=${SECRET}`,
    `postgres://db.internal/atoll?sslpassword=${SECRET}&sslmode=require`,
    `postgres://db.internal/atoll?pass%77ord=${SECRET}`,
    `redis://127.0.0.1:6379/0?password=${SECRET}`,
    `rediss://redis.internal:6380?username=atoll&password=${SECRET}`,
    `redis://127.0.0.1:6379?sentinelPassword=${SECRET}#x`,
    // Not a URL WHATWG parses (a space in the host): masked all the same.
    `redis://bad host:6379?password=${SECRET}`,
  ])('maskPassword(%s) hides it', (url) => {
    expect(maskPassword(url)).not.toContain(SECRET);
    expect(maskPassword(url)).toContain('***');
  });

  test('the other parameters stay as written', () => {
    expect(maskPassword(`postgres://db.internal/atoll?sslmode=require&password=${SECRET}&application_name=a%20b`)).toBe(
      'postgres://db.internal/atoll?sslmode=require&password=***&application_name=a%20b',
    );
    expect(maskPassword('postgres://db.internal/atoll?passes=2')).toBe('postgres://db.internal/atoll?passes=2');
  });

  test('the DATABASE_URL the logs and start-up errors print hides it', () => {
    const target = parseDatabaseUrl(`postgresql://127.0.0.1:5432/atoll?user=atoll&password=${SECRET}`, '/tmp');
    expect(target.kind === 'postgresql' && target.masked).not.toContain(SECRET);
  });

  test.each([
    // No database named: refused, and the refusal shows the value.
    ['DATABASE_URL', `postgresql://127.0.0.1:5432?user=atoll&password=${SECRET}`],
    // A space: refused.
    ['REDIS_URL', `redis://127.0.0.1:6379/0?password=${SECRET} `],
  ])('a configuration error about %s hides it', (name, value) => {
    let message = 'accepted';
    try {
      loadConfig({ [name]: value }, '/tmp');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain(name);
    expect(message).toContain('password=***');
    expect(message).not.toContain(SECRET);
  });
});

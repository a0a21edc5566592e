/**
 * What `npm start` prints once the front listens (scripts/start.js asks for it): the address to open and how to
 * get a token. Plain lines for a person at a terminal, on stderr; the JSON log on stdout is unchanged. It never
 * contains a secret: the JWT recipe names AUTH_JWT_SECRET, it does not print it.
 */
import path from 'node:path';
import type { Config } from './config.js';
import { localStateDir } from './store/database-target.js';

/** An address a browser on this machine can open: a wildcard host is reachable on loopback. */
export function openableUrl(host: string, port: number): string {
  if (host === '0.0.0.0') return `http://127.0.0.1:${port}`;
  if (host === '::' || host === '[::]') return `http://localhost:${port}`;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export function startBanner(config: Pick<Config, 'host' | 'devLogin' | 'jwtSecret' | 'database'>, port: number): string {
  const url = openableUrl(config.host, port);
  const sign = `node -e "console.log(require('jsonwebtoken').sign({ sub: 'alice' }, process.env.AUTH_JWT_SECRET, { expiresIn: '1h' }))"`;
  const token = config.devLogin
    ? [
        '  Token (dev login is on; any user id):',
        `    TOKEN=$(curl -s -XPOST ${url}/v1/auth/dev-login -H 'content-type: application/json' -d '{"user_id":"alice"}' | jq -r .token)`,
      ]
    : config.jwtSecret
      ? ['  Token (dev login is off): a JWT signed with AUTH_JWT_SECRET (HS256, sub = user id, with exp), e.g.', `    TOKEN=$(${sign})`]
      : [
          '  Token (dev login is off, no AUTH_JWT_SECRET): sign with the development secret, e.g.',
          `    TOKEN=$(AUTH_JWT_SECRET=$(cat ${path.join(localStateDir(config.database), '.dev-jwt-secret')}) ${sign})`,
          '  or start with AUTH_DEV_LOGIN=1.',
        ];
  return [
    '',
    `Atoll is listening. Open ${url}/ (the chat page; ${url}/ops the operations view).`,
    ...token,
    `  Then: curl -s ${url}/v1/threads -H "authorization: Bearer $TOKEN"   (more in README, "The two commands")`,
    '',
  ].join('\n');
}

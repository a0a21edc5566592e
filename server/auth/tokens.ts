/**
 * Identity: HS256 JWTs whose `sub` is the user id. The only source of a user id anywhere in the front.
 */
import { createSecretKey, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import { CodedError } from '../../protocol/errors.js';

export interface Session {
  userId: string;
  /** Epoch ms when the token expires; null when it never does. */
  expiresAt: number | null;
}

export interface TokenService {
  /** Returns the user id, or throws UNAUTHORIZED. */
  verify(token: unknown): string;
  /** The user id and the token's expiry, or throws UNAUTHORIZED. */
  session(token: unknown): Session;
  issue(userId: string, ttlSeconds?: number): string;
}

const USER_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

export function isValidUserId(id: unknown): id is string {
  return typeof id === 'string' && USER_ID.test(id);
}

export interface TokenPolicy {
  /** AUTH_MAX_TOKEN_LIFETIME_S: a token valid for longer than this (exp - iat, or exp - now) is refused. */
  maxLifetimeS: number;
}

/** How far the issuer's clock may run ahead of ours: an iat or a lifetime this much over is still accepted. */
export const CLOCK_SKEW_S = 60;

export function createTokenService(secretText: string, policy: TokenPolicy): TokenService {
  // A KeyObject, not a string: with a string jsonwebtoken first tries (and fails) to parse it as a public key
  // on every verification.
  const secret = createSecretKey(Buffer.from(secretText, 'utf8'));
  const service: TokenService = {
    verify(token) {
      return service.session(token).userId;
    },
    session(token) {
      if (typeof token !== 'string' || token.length === 0) throw new CodedError('UNAUTHORIZED', 'missing token');
      let claims: jwt.JwtPayload | string;
      try {
        claims = jwt.verify(token, secret, { algorithms: ['HS256'] });
      } catch (err) {
        const why = (err as Error).name === 'TokenExpiredError' ? 'token expired' : 'invalid token';
        throw new CodedError('UNAUTHORIZED', why);
      }
      const sub = typeof claims === 'object' ? claims.sub : undefined;
      if (!isValidUserId(sub)) throw new CodedError('UNAUTHORIZED', 'token has no valid sub (user id)');
      // A token without exp would be valid forever, and a very long-lived one nearly so: a leaked token must
      // stop working on its own.
      if (typeof claims !== 'object' || typeof claims.exp !== 'number') throw new CodedError('UNAUTHORIZED', 'token has no exp (expiry); tokens must expire');
      // exp - iat alone can be cheated with an iat in the future (iat = exp - 60, exp in ten years): the time
      // left from now is held to the cap as well, and an iat ahead of our clock is refused.
      const now = Math.floor(Date.now() / 1000);
      const issuedAt = typeof claims.iat === 'number' ? claims.iat : now;
      if (issuedAt > now + CLOCK_SKEW_S) throw new CodedError('UNAUTHORIZED', 'token issued in the future (iat)');
      if (claims.exp - issuedAt > policy.maxLifetimeS || claims.exp - now > policy.maxLifetimeS + CLOCK_SKEW_S) {
        throw new CodedError('UNAUTHORIZED', `token lives longer than AUTH_MAX_TOKEN_LIFETIME_S (${policy.maxLifetimeS} s)`);
      }
      return { userId: sub, expiresAt: claims.exp * 1000 };
    },
    issue(userId, ttlSeconds = Math.min(12 * 3600, policy.maxLifetimeS)) {
      return jwt.sign({}, secret, { algorithm: 'HS256', subject: userId, expiresIn: ttlSeconds });
    },
  };
  return service;
}

/**
 * Without AUTH_JWT_SECRET (development only; config refuses it in production) a random secret is kept in
 * `dir` (beside a SQLite database: server/store/database-target.ts), so tokens survive restarts of the same
 * local server.
 */
export function developmentSecret(dir: string): string {
  const file = path.join(dir, '.dev-jwt-secret');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const secret = randomBytes(32).toString('hex');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, secret, { mode: 0o600 });
    return secret;
  }
}

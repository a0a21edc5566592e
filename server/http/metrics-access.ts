/**
 * Who may read /metrics. With METRICS_TOKEN set, only a request carrying `Authorization: Bearer <METRICS_TOKEN>`
 * (Prometheus's `authorization` scrape setting, the /ops page once given it); unset, whoever reaches the port,
 * which is right only where the port is private (behind HAProxy, which answers /metrics 404 to the public).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { CodedError } from '../../protocol/errors.js';

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export function metricsAccess(token: string | null): RequestHandler {
  if (token === null) return (_req, _res, next) => next();
  // Compared as digests: equal lengths for timingSafeEqual, and no timing on how much of the token was right.
  const expected = digest(token);
  return (req, res, next) => {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (match && timingSafeEqual(digest(match[1]), expected)) return next();
    res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
    next(new CodedError('UNAUTHORIZED', match ? 'wrong metrics token' : 'this server asks for its metrics token (Authorization: Bearer <METRICS_TOKEN>)'));
  };
}

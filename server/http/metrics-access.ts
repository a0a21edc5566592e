/**
 * Who may read what is for operators: /metrics, and why a /readyz check fails. With METRICS_TOKEN set, only a
 * request carrying `Authorization: Bearer <METRICS_TOKEN>` (Prometheus's `authorization` scrape setting, the /ops
 * page once given it); unset, whoever reaches the port, which is right only where the port is private (behind
 * HAProxy, which answers /metrics 404 to the public).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { CodedError } from '../../protocol/errors.js';

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function bearerOf(req: Request): string | null {
  const header = req.headers.authorization;
  return (typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined) ?? null;
}

/** Whether a request's Authorization header carries the token: always true when there is none to carry. */
export function operatorCheck(token: string | null): (req: Request) => boolean {
  if (token === null) return () => true;
  // Compared as digests: equal lengths for timingSafeEqual, and no timing on how much of the token was right.
  const expected = digest(token);
  return (req) => {
    const given = bearerOf(req);
    return given !== null && timingSafeEqual(digest(given), expected);
  };
}

export function metricsAccess(token: string | null): RequestHandler {
  const isOperator = operatorCheck(token);
  return (req, res, next) => {
    if (isOperator(req)) return next();
    res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
    next(new CodedError('UNAUTHORIZED', bearerOf(req) !== null ? 'wrong metrics token' : 'this server asks for its metrics token (Authorization: Bearer <METRICS_TOKEN>)'));
  };
}

/** Bearer-token authentication for /v1: the user id comes from the verified token and nowhere else. */
import type { RequestHandler } from 'express';
import type { TokenService } from '../auth/tokens.js';
import { CodedError } from '../protocol/errors.js';

export function requireUser(tokens: TokenService): RequestHandler {
  return (req, res, next) => {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(.+)$/i.exec(header) : null;
    if (!match) return next(new CodedError('UNAUTHORIZED', 'missing bearer token (Authorization: Bearer <token>)'));
    res.locals.userId = tokens.verify(match[1]);
    next();
  };
}

export function userOf(res: { locals: Record<string, unknown> }): string {
  return res.locals.userId as string;
}

/** Bearer-token authentication for /v1: the user id comes from the verified token and nowhere else. */
import type { RequestHandler } from 'express';
import type { Session, TokenService } from '../auth/tokens.js';
import { CodedError } from '../../protocol/errors.js';

export function requireUser(tokens: TokenService): RequestHandler {
  return (req, res, next) => {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(.+)$/i.exec(header) : null;
    if (!match) return next(new CodedError('UNAUTHORIZED', 'missing bearer token (Authorization: Bearer <token>)'));
    const session = tokens.session(match[1]);
    res.locals.userId = session.userId;
    res.locals.session = session;
    next();
  };
}

export function sessionOf(res: { locals: Record<string, unknown> }): Session {
  return res.locals.session as Session;
}

export function userOf(res: { locals: Record<string, unknown> }): string {
  return res.locals.userId as string;
}

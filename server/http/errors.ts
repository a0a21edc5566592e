/** Coded errors → HTTP: status from the code registry, a JSON body the client can act on. */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from '../logger.js';
import { CodedError, ERROR_CODES, toErrorBody } from '../protocol/errors.js';

export function notFoundHandler(): RequestHandler {
  return (req, res) => {
    res.status(404).json({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.path}` } });
  };
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let coded: CodedError;
    const type = (err as { type?: string })?.type;
    if (err instanceof CodedError) coded = err;
    else if (type === 'entity.parse.failed') coded = new CodedError('BAD_REQUEST', 'malformed JSON body');
    else if (type === 'entity.too.large') coded = new CodedError('PAYLOAD_TOO_LARGE', 'request body is too large');
    else if (typeof type === 'string' && (err as { status?: number }).status === 400) coded = new CodedError('BAD_REQUEST', String(err.message));
    else {
      log.error({ err: String(err?.stack ?? err), method: req.method, path: req.path }, 'unhandled HTTP error');
      coded = new CodedError('INTERNAL', 'internal error');
    }
    if (coded.retryAfterSeconds) res.setHeader('Retry-After', String(coded.retryAfterSeconds));
    res.status(ERROR_CODES[coded.code].http).json({ error: toErrorBody(coded) });
  };
}

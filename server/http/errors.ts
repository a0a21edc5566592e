/** Coded errors → HTTP: status from the code registry, a JSON body the client can act on. */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from '../logger.js';
import { CodedError, ERROR_CODES, toErrorBody } from '../../protocol/errors.js';

export function notFoundHandler(): RequestHandler {
  return (req, res) => {
    res.status(404).json({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.path}` } });
  };
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let coded: CodedError;
    if (err instanceof CodedError) coded = err;
    else if (isClientBodyError(err)) {
      // The client's mistake (body-parser's 4xx: bad JSON, too large, unsupported encoding or charset): a
      // coded answer with its status, worth a debug line at most.
      coded = bodyError(err);
      log.debug({ type: err.type, method: req.method, path: req.path }, 'refused request body');
    } else {
      log.error({ err: String(err?.stack ?? err), method: req.method, path: req.path }, 'unhandled HTTP error');
      coded = new CodedError('INTERNAL', 'internal error');
    }
    if (coded.retryAfterSeconds) res.setHeader('Retry-After', String(coded.retryAfterSeconds));
    res.status(ERROR_CODES[coded.code].http).json({ error: toErrorBody(coded) });
  };
}

interface BodyParserError {
  type: string;
  status: number;
  message: string;
  charset?: string;
  encoding?: string;
}

function isClientBodyError(err: unknown): err is BodyParserError {
  const e = err as Partial<BodyParserError> | null;
  return typeof e?.type === 'string' && typeof e.status === 'number' && e.status >= 400 && e.status < 500;
}

function bodyError(err: BodyParserError): CodedError {
  switch (err.type) {
    case 'entity.parse.failed':
      return new CodedError('BAD_REQUEST', 'malformed JSON body');
    case 'entity.too.large':
      return new CodedError('PAYLOAD_TOO_LARGE', 'request body is too large');
    case 'encoding.unsupported':
      return new CodedError('UNSUPPORTED_MEDIA_TYPE', `unsupported Content-Encoding ${JSON.stringify(err.encoding ?? '')}; send identity, gzip, deflate or br`);
    case 'charset.unsupported':
      return new CodedError('UNSUPPORTED_MEDIA_TYPE', `unsupported charset ${JSON.stringify(err.charset ?? '')}; send UTF-8 JSON`);
    default:
      if (err.status === 413) return new CodedError('PAYLOAD_TOO_LARGE', 'request body is too large');
      if (err.status === 415) return new CodedError('UNSUPPORTED_MEDIA_TYPE', String(err.message));
      return new CodedError('BAD_REQUEST', String(err.message));
  }
}

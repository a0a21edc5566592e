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
    else if (isClientError(err)) {
      // The client's mistake, raised by express or body-parser with its 4xx status (a path parameter that is not
      // valid percent-encoding, bad JSON, a body too large, an unsupported encoding or charset): a coded answer
      // with its status, and one line without a stack (this is no fault of ours).
      coded = clientError(err);
      log.info({ status: statusOf(err), type: err.type, code: coded.code, method: req.method, path: req.path }, 'refused malformed request');
    } else {
      log.error({ err: String(err?.stack ?? err), method: req.method, path: req.path }, 'unhandled HTTP error');
      coded = new CodedError('INTERNAL', 'internal error');
    }
    if (coded.retryAfterSeconds) res.setHeader('Retry-After', String(coded.retryAfterSeconds));
    res.status(ERROR_CODES[coded.code].http).json({ error: toErrorBody(coded) });
  };
}

/** What express, its router and body-parser raise for a bad request: an error carrying a 4xx status (http-errors' style). */
interface ClientError {
  status?: number;
  statusCode?: number;
  type?: string;
  message: string;
  charset?: string;
  encoding?: string;
}

const statusOf = (err: ClientError): number | undefined => err.status ?? err.statusCode;

function isClientError(err: unknown): err is ClientError {
  const status = typeof err === 'object' && err !== null ? statusOf(err as ClientError) : undefined;
  return typeof status === 'number' && status >= 400 && status < 500;
}

function clientError(err: ClientError): CodedError {
  switch (err.type) {
    case 'entity.parse.failed':
      return new CodedError('BAD_REQUEST', 'malformed JSON body');
    case 'entity.too.large':
      return new CodedError('PAYLOAD_TOO_LARGE', 'request body is too large');
    case 'encoding.unsupported':
      return new CodedError('UNSUPPORTED_MEDIA_TYPE', `unsupported Content-Encoding ${JSON.stringify(err.encoding ?? '')}; send identity, gzip, deflate or br`);
    case 'charset.unsupported':
      return new CodedError('UNSUPPORTED_MEDIA_TYPE', `unsupported charset ${JSON.stringify(err.charset ?? '')}; send UTF-8 JSON`);
    default: {
      const status = statusOf(err);
      if (status === 413) return new CodedError('PAYLOAD_TOO_LARGE', 'request body is too large');
      if (status === 415) return new CodedError('UNSUPPORTED_MEDIA_TYPE', String(err.message).slice(0, 200));
      // The router's URIError: its message quotes the raw parameter, which is the client's own text.
      if (err instanceof URIError) return new CodedError('BAD_REQUEST', 'malformed URL: a path parameter is not valid percent-encoding');
      return new CodedError('BAD_REQUEST', String(err.message).slice(0, 200));
    }
  }
}

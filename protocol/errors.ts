/**
 * The one registry of error codes. Every error that leaves Atoll (HTTP body, socket ack, terminal event)
 * carries one of these codes; clients branch on `code`, never on message text. A test checks that README
 * documents every code.
 */
export const ERROR_CODES = {
  BAD_REQUEST: { http: 400, retryable: false, meaning: 'The request is malformed; the message says what is wrong.' },
  UNAUTHORIZED: { http: 401, retryable: false, meaning: 'No valid token (missing, malformed, expired or wrongly signed).' },
  FORBIDDEN: { http: 403, retryable: false, meaning: 'The action is disabled on this server (for example dev login in production).' },
  NOT_FOUND: { http: 404, retryable: false, meaning: 'No such thread, run or agent for this user (another user\'s ids look exactly like unknown ones).' },
  PAYLOAD_TOO_LARGE: { http: 413, retryable: false, meaning: 'The request body or input is over its size limit.' },
  UNSUPPORTED_MEDIA_TYPE: { http: 415, retryable: false, meaning: 'The request body\'s Content-Encoding or charset is not supported (send UTF-8 JSON, identity, gzip, deflate or br).' },
  THREAD_BUSY: { http: 409, retryable: true, meaning: 'The thread has a run in progress and the request asked multitask "reject", or a delete of the thread found a run of it queued or in progress.' },
  RATE_LIMITED: { http: 429, retryable: true, meaning: 'Too many requests or connections; retry after the hinted delay. The limit recovers after its window.' },
  STORAGE_QUOTA_EXCEEDED: { http: 507, retryable: false, meaning: 'The user stores USER_MAX_STORED_BYTES or more (its events and messages): new runs are refused until it deletes threads (DELETE /v1/threads/:id). Nothing was accepted.' },
  OVERLOADED: { http: 503, retryable: true, meaning: 'The run queue is full; retry after the hinted delay. Nothing was accepted.' },
  DB_UNAVAILABLE: { http: 503, retryable: true, meaning: 'The database cannot be reached right now; retry after the hinted delay. Nothing was accepted; with the same correlation_id a retry is always safe.' },
  REDIS_UNAVAILABLE: { http: 503, retryable: true, meaning: 'Redis (several nodes) cannot be reached right now, so a connection ticket or a socket\'s connection slot cannot be checked across nodes; retry after the hinted delay. Nothing was issued or admitted; a ticket refused so may be used up: fetch a new one.' },
  SHUTTING_DOWN: { http: 503, retryable: true, meaning: 'The server is draining for shutdown; retry on another node or after restart.' },
  AGENT_ERROR: { http: 500, retryable: false, meaning: 'The agent threw or returned an invalid result.' },
  WORKER_CRASHED: { http: 500, retryable: true, meaning: 'The run\'s worker thread or cell died (or the server restarted mid-run).' },
  OUT_OF_MEMORY: { http: 500, retryable: false, meaning: 'The run exceeded its memory budget.' },
  TIMEOUT: { http: 504, retryable: true, meaning: 'The run exceeded RUN_TIMEOUT_MS.' },
  CANCELLED: { http: 409, retryable: false, meaning: 'The run was stopped by its user or by server shutdown.' },
  LIMIT_EXCEEDED: { http: 500, retryable: false, meaning: 'The run exceeded an output cap (events, event size or result size) or its scratch folder\'s budget (RUN_SCRATCH_MB, RUN_SCRATCH_FILES).' },
  SINGLETON_AGENT: { http: 500, retryable: false, meaning: 'The agent factory returned an instance that already served a run; the run was refused.' },
  INTERNAL: { http: 500, retryable: true, meaning: 'An unexpected server fault; it is logged with the request id.' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The most characters of a run's error message that travel (the worker cuts an agent's; the cell again). */
export const MAX_ERROR_MESSAGE = 1000;

/** An error as data: what crosses every hop (worker → cell → front → client). No stacks, no classes. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

/** Thrown inside the front where control flow needs it; turned back into an ErrorBody at the edge. */
export class CodedError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSeconds?: number;

  constructor(code: ErrorCode, message: string, options: { retryAfterSeconds?: number } = {}) {
    super(message);
    this.name = 'CodedError';
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  toBody(): ErrorBody {
    return { code: this.code, message: this.message };
  }
}

/** What was thrown, as one line for a log or an error: its message, or the value itself when it is no Error. */
export function messageOf(err: unknown): string {
  return String((err as Error)?.message ?? err);
}

/** Flattens anything thrown into an ErrorBody; unknown faults become INTERNAL without leaking details. */
export function toErrorBody(err: unknown, fallback: ErrorCode = 'INTERNAL'): ErrorBody {
  if (err instanceof CodedError) return err.toBody();
  if (err && typeof err === 'object' && isErrorCode((err as { code?: unknown }).code)) {
    return { code: (err as { code: ErrorCode }).code, message: String((err as { message?: unknown }).message ?? '') };
  }
  return { code: fallback, message: fallback === 'INTERNAL' ? 'internal error' : messageOf(err) };
}

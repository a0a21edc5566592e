/**
 * Schemas of every client request (HTTP bodies, query strings and socket payloads), checked once at the
 * edge. Unknown fields are dropped, so a spoofed `user_id` in a payload is simply ignored.
 */
import { z } from 'zod';
import type { AgentInput } from './agent-input.js';
import { CodedError } from './errors.js';
import { jsonBytesWithin } from './json-size.js';
import { assertSafePayload } from './safe-json.js';

const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9._:-]+$/, 'must be an id (letters, digits, . _ : -)');

export const AgentName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be an agent name (letters, digits, _ -, at most 64)');

/** A string, or any JSON object: what an agent needs of it is its own declaration (protocol/agent-input.ts). */
const InputSchema = z.union([z.string(), z.looseObject({})], { error: 'must be a string or a JSON object' });

export const Multitask = z.enum(['enqueue', 'reject', 'interrupt']);

export const StartRunBody = z.object({
  agent: AgentName,
  input: InputSchema,
  thread_id: id.optional(),
  correlation_id: z.string().min(1).max(128).optional(),
  multitask: Multitask.default('enqueue'),
});

export const SubscribeRunBody = z.object({
  run_id: id,
  after_seq: z.number().int().min(0).default(0),
});

export const ThreadHistoryBody = z.object({
  thread_id: id,
  limit: z.number().int().min(1).max(100).default(50),
  after: z.number().int().min(0).default(0),
});

export const RefreshTokenBody = z.object({ token: z.string().min(1).max(4096) });

export const ThreadRunBody = StartRunBody.omit({ thread_id: true });

export const CreateThreadBody = z.object({ title: z.string().max(200).optional() });

export const StopRunBody = z.object({ run_id: id });

export const DevLoginBody = z.object({ user_id: z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/, 'must be 1-128 letters, digits or . _ : @ -') });

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  after: z.coerce.number().int().min(0).default(0),
});

export const EventsQuery = z.object({
  after_seq: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(1000),
});

/** Between the time and the thread id in a `next_before` cursor: in neither an ISO time nor an id. */
export const THREAD_CURSOR_SEPARATOR = '~';

/**
 * `before` of GET /v1/threads: a page's `next_before` (`<updated_at>~<thread id>`: the threads listed after that
 * one, those updated at the same millisecond included), or an ISO time (the threads updated before it).
 */
const ThreadsBefore = z.string().max(200).transform((text, ctx) => {
  const cut = text.indexOf(THREAD_CURSOR_SEPARATOR);
  const updatedAt = cut < 0 ? text : text.slice(0, cut);
  const threadId = cut < 0 ? null : text.slice(cut + 1);
  if (!z.iso.datetime().safeParse(updatedAt).success || (threadId !== null && !id.safeParse(threadId).success)) {
    ctx.addIssue({ code: 'custom', message: 'must be a next_before cursor or an ISO date-time' });
    return z.NEVER;
  }
  return { updatedAt, threadId };
});

export const ThreadsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  before: ThreadsBefore.optional(),
});

export const IdParam = id;

export const IdempotencyKey = z.string().min(1).max(128);

/** Parses or throws BAD_REQUEST naming the fields that are wrong (after the generic payload checks). */
export function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  assertSafePayload(value, what);
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.length ? i.path.join('.') : what}: ${i.message}`);
  throw new CodedError('BAD_REQUEST', `invalid ${what}: ${problems.join('; ')}`);
}

/**
 * parse, for a payload that starts a run: its input's size is checked first, looking at no more than
 * MAX_INPUT_BYTES of it, so an oversize input is refused before the checks that walk all of it (the payload
 * checks, the schema, normalizeInput's JSON.stringify) cost the front per key.
 */
export function parseRunStart<T>(schema: z.ZodType<T>, value: unknown, what: string, maxInputBytes: number): T {
  if (value !== null && typeof value === 'object' && Object.hasOwn(value, 'input')) {
    const input = (value as { input: unknown }).input;
    // Measured as normalizeInput measures it: a string as { text }.
    if (jsonBytesWithin(typeof input === 'string' ? { text: input } : input, maxInputBytes) === null) {
      throw new CodedError('PAYLOAD_TOO_LARGE', `input is over ${maxInputBytes} bytes; MAX_INPUT_BYTES is ${maxInputBytes}`);
    }
  }
  return parse(schema, value, what);
}

/**
 * The most a message that starts a run may hold on the wire: a socket message (socket.io's maxHttpBufferSize) or an
 * HTTP body. Three times MAX_INPUT_BYTES and 16 KiB: MAX_INPUT_BYTES counts the input as JSON.stringify writes it
 * (non-ASCII raw), but a client's encoder may escape every non-ASCII character (Python's json.dumps does by default,
 * so python-socketio and requests' `json=` do): `\u0436` is 6 bytes for the 2 of `ж`, 12 for an emoji's 4, never
 * more than three times; the 16 KiB hold the envelope and room for a moderately oversize input to get
 * PAYLOAD_TOO_LARGE. A socket message over this is cut off by socket.io (the socket closes), a body gets 413. Not
 * more: socket.io parses every frame before the front sees it, refused or not, and a wide object costs ~110 ns per
 * byte to parse (~25 ms at this cap's default, 208 KiB).
 */
export const messageCap = (maxInputBytes: number): number => 3 * maxInputBytes + 16 * 1024;

/** A string input becomes { text }; the serialized size is capped. */
export function normalizeInput(input: z.infer<typeof InputSchema>, maxBytes: number): AgentInput {
  const normalized = (typeof input === 'string' ? { text: input } : input) as AgentInput;
  const size = Buffer.byteLength(JSON.stringify(normalized));
  if (size > maxBytes) throw new CodedError('PAYLOAD_TOO_LARGE', `input is ${size} bytes; MAX_INPUT_BYTES is ${maxBytes}`);
  return normalized;
}

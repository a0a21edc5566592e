/**
 * Request validation on its own: each schema's accepted and refused values and defaults, parse's
 * BAD_REQUEST message naming the fields, the generic payload checks first, and the input size cap.
 */
import {
  AgentName,
  CreateThreadBody,
  DevLoginBody,
  EventsQuery,
  IdempotencyKey,
  IdParam,
  normalizeInput,
  PageQuery,
  parse,
  parseRunStart,
  RefreshTokenBody,
  StartRunBody,
  StopRunBody,
  SubscribeRunBody,
  ThreadHistoryBody,
  ThreadRunBody,
  ThreadsQuery,
} from '../../protocol/requests';
import { z } from 'zod';
import { CodedError } from '../../protocol/errors';

/** The CodedError parse throws, as code and message. */
function refusal(fn: () => unknown): { code: string; message: string } | 'accepted' {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CodedError);
    return { code: (err as CodedError).code, message: (err as Error).message };
  }
  return 'accepted';
}
const ok = (schema: { safeParse(v: unknown): { success: boolean } }, v: unknown) => schema.safeParse(v).success;

test('ids: 1 to 128 of letters, digits, . _ : -', () => {
  for (const good of ['a', 'A-z_0.9:x', 'x'.repeat(128)]) expect(ok(IdParam, good)).toBe(true);
  for (const bad of ['', 'x'.repeat(129), 'a b', 'a/b', 'é', 'a\nb', 7]) expect(ok(IdParam, bad)).toBe(false);
  expect(IdParam.safeParse('a b').error?.issues[0].message).toBe('must be an id (letters, digits, . _ : -)');
});

test('agent names: 1 to 64 of letters, digits, _ -', () => {
  for (const good of ['echo', 'A_b-9', 'x'.repeat(64)]) expect(ok(AgentName, good)).toBe(true);
  for (const bad of ['', 'x'.repeat(65), 'a.b', 'a:b', ' echo', 'echo ']) expect(ok(AgentName, bad)).toBe(false);
  expect(AgentName.safeParse('a.b').error?.issues[0].message).toBe('must be an agent name (letters, digits, _ -, at most 64)');
});

test('start run: agent and input required, the rest optional with enqueue by default, unknown fields dropped', () => {
  expect(parse(StartRunBody, { agent: 'echo', input: 'hi', user_id: 'spoofed' }, 'body')).toEqual({ agent: 'echo', input: 'hi', multitask: 'enqueue' });
  const full = { agent: 'echo', input: { text: 'hi', extra: 1 }, thread_id: 't1', correlation_id: 'c', multitask: 'interrupt' };
  expect(parse(StartRunBody, full, 'body')).toEqual(full);
  for (const m of ['enqueue', 'reject', 'interrupt']) expect(parse(StartRunBody, { agent: 'a', input: 'x', multitask: m }, 'body').multitask).toBe(m);
  expect(ok(StartRunBody, { agent: 'a', input: 'x', multitask: 'queue' })).toBe(false);
  // Any JSON object is an input (what an agent takes is its own declaration, checked at acceptance); not an array.
  expect(parse(StartRunBody, { agent: 'a', input: { numbers: [1, 2], nested: { deep: true } } }, 'body').input).toEqual({ numbers: [1, 2], nested: { deep: true } });
  expect(ok(StartRunBody, { agent: 'a', input: [1, 2] })).toBe(false);
  expect(ok(StartRunBody, { agent: 'a', input: null })).toBe(false);
  expect(ok(StartRunBody, { agent: 'a', input: 5 })).toBe(false);
  expect(ok(StartRunBody, { agent: 'a', input: 'x', correlation_id: '' })).toBe(false);
  expect(ok(StartRunBody, { agent: 'a', input: 'x', correlation_id: 'c'.repeat(129) })).toBe(false);
  expect(ok(StartRunBody, { agent: 'a', input: 'x', correlation_id: 'c'.repeat(128) })).toBe(true);
  expect(ok(StartRunBody, { agent: 'a', input: 'x', thread_id: 'a b' })).toBe(false);
});

test('a thread run takes no thread_id of its own', () => {
  expect(parse(ThreadRunBody, { agent: 'a', input: 'x', thread_id: 'other' }, 'body')).toEqual({ agent: 'a', input: 'x', multitask: 'enqueue' });
});

test('subscribe and history: integer cursors from 0, page sizes within bounds, defaults', () => {
  expect(parse(SubscribeRunBody, { run_id: 'r' }, 'payload')).toEqual({ run_id: 'r', after_seq: 0 });
  expect(ok(SubscribeRunBody, { run_id: 'r', after_seq: -1 })).toBe(false);
  expect(ok(SubscribeRunBody, { run_id: 'r', after_seq: 1.5 })).toBe(false);
  expect(ok(SubscribeRunBody, { run_id: 'r', after_seq: '3' })).toBe(false);
  expect(parse(ThreadHistoryBody, { thread_id: 't' }, 'payload')).toEqual({ thread_id: 't', limit: 50, after: 0 });
  expect(parse(ThreadHistoryBody, { thread_id: 't', limit: 100, after: 9 }, 'payload')).toEqual({ thread_id: 't', limit: 100, after: 9 });
  for (const bad of [{ limit: 0 }, { limit: 101 }, { limit: 2.5 }, { after: -1 }]) expect(ok(ThreadHistoryBody, { thread_id: 't', ...bad })).toBe(false);
});

test('small bodies: refresh token, thread title, stop, dev login, idempotency key', () => {
  expect(ok(RefreshTokenBody, { token: 't' })).toBe(true);
  expect(ok(RefreshTokenBody, { token: '' })).toBe(false);
  expect(ok(RefreshTokenBody, { token: 't'.repeat(4097) })).toBe(false);
  expect(ok(RefreshTokenBody, { token: 't'.repeat(4096) })).toBe(true);
  expect(parse(CreateThreadBody, {}, 'body')).toEqual({});
  expect(ok(CreateThreadBody, { title: 't'.repeat(200) })).toBe(true);
  expect(ok(CreateThreadBody, { title: 't'.repeat(201) })).toBe(false);
  expect(ok(StopRunBody, { run_id: 'r1' })).toBe(true);
  expect(ok(StopRunBody, {})).toBe(false);
  for (const good of ['alice', 'a.b_c:d@e-f', 'u'.repeat(128)]) expect(ok(DevLoginBody, { user_id: good })).toBe(true);
  for (const bad of ['', 'u'.repeat(129), 'a b', 'a/b']) expect(ok(DevLoginBody, { user_id: bad })).toBe(false);
  expect(DevLoginBody.safeParse({ user_id: 'a b' }).error?.issues[0].message).toBe('must be 1-128 letters, digits or . _ : @ -');
  expect(ok(IdempotencyKey, 'k'.repeat(128))).toBe(true);
  expect(ok(IdempotencyKey, 'k'.repeat(129))).toBe(false);
  expect(ok(IdempotencyKey, '')).toBe(false);
});

test('query strings are coerced from text, with defaults and bounds', () => {
  expect(parse(PageQuery, {}, 'query')).toEqual({ limit: 50, after: 0 });
  expect(parse(PageQuery, { limit: '100', after: '7' }, 'query')).toEqual({ limit: 100, after: 7 });
  for (const bad of [{ limit: '0' }, { limit: '101' }, { after: '-1' }, { limit: 'x' }]) expect(ok(PageQuery, bad)).toBe(false);
  expect(parse(EventsQuery, {}, 'query')).toEqual({ after_seq: 0, limit: 1000 });
  expect(parse(EventsQuery, { after_seq: '5', limit: '1' }, 'query')).toEqual({ after_seq: 5, limit: 1 });
  for (const bad of [{ limit: '0' }, { limit: '1001' }, { after_seq: '-1' }, { after_seq: '1.5' }]) expect(ok(EventsQuery, bad)).toBe(false);
  expect(parse(ThreadsQuery, {}, 'query')).toEqual({ limit: 50 });
  // A plain ISO time (threads updated before it), or next_before's cursor: the time and the last thread's id.
  expect(parse(ThreadsQuery, { before: '2024-01-02T03:04:05Z', limit: '2' }, 'query')).toEqual({ before: { updatedAt: '2024-01-02T03:04:05Z', threadId: null }, limit: 2 });
  expect(parse(ThreadsQuery, { before: '2024-01-02T03:04:05.000Z~thread-1' }, 'query')).toEqual({ before: { updatedAt: '2024-01-02T03:04:05.000Z', threadId: 'thread-1' }, limit: 50 });
  expect(ok(ThreadsQuery, { before: 'yesterday' })).toBe(false);
  expect(ok(ThreadsQuery, { before: 'yesterday~thread-1' })).toBe(false);
  expect(ok(ThreadsQuery, { limit: '101' })).toBe(false);
});

test('parse throws BAD_REQUEST naming each wrong field, or the whole value when it has no path', () => {
  expect(refusal(() => parse(StartRunBody, { agent: 'a.b', input: 5 }, 'body'))).toEqual({
    code: 'BAD_REQUEST',
    message: expect.stringMatching(/^invalid body: agent: must be an agent name \(letters, digits, _ -, at most 64\); input: .+$/),
  });
  expect(refusal(() => parse(StopRunBody, { run_id: 'r', nested: { deep: { run_id: 'x' } } }, 'payload'))).toBe('accepted');
  expect(refusal(() => parse(StopRunBody, { run_id: { id: 'r' } }, 'payload'))).toEqual({ code: 'BAD_REQUEST', message: expect.stringMatching(/^invalid payload: run_id: /) });
  expect(refusal(() => parse(IdParam, 'a b', 'run id'))).toEqual({ code: 'BAD_REQUEST', message: 'invalid run id: run id: must be an id (letters, digits, . _ : -)' });
  expect(refusal(() => parse(StopRunBody, 'r1', 'payload'))).toEqual({ code: 'BAD_REQUEST', message: expect.stringMatching(/^invalid payload: payload: /) });
  // A nested field is named by its dotted path.
  const nested = z.object({ a: z.object({ b: z.string() }) });
  expect(refusal(() => parse(nested, { a: { b: 1 } }, 'body'))).toEqual({ code: 'BAD_REQUEST', message: expect.stringMatching(/^invalid body: a\.b: /) });
});

test('parse applies the generic payload checks first', () => {
  expect(refusal(() => parse(StartRunBody, JSON.parse('{"agent":"a","input":{"text":"x","__proto__":{"polluted":1}}}'), 'body'))).toEqual({
    code: 'BAD_REQUEST',
    message: expect.stringContaining('__proto__'),
  });
  expect(refusal(() => parse(StopRunBody, { run_id: 'a\u0000' }, 'payload'))).toEqual({ code: 'BAD_REQUEST', message: expect.stringContaining('control characters') });
});

test('normalizeInput: a string becomes { text }; an object stays; the JSON size is capped, inclusive', () => {
  expect(normalizeInput('hi', 100)).toEqual({ text: 'hi' });
  const obj = { text: 'hi', extra: [1] };
  expect(normalizeInput(obj, 100)).toBe(obj);
  const exact = JSON.stringify({ text: 'é' }).length + 1; // é is 2 bytes in UTF-8
  expect(normalizeInput('é', exact)).toEqual({ text: 'é' });
  expect(refusal(() => normalizeInput('é', exact - 1))).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: `input is ${exact} bytes; MAX_INPUT_BYTES is ${exact - 1}` });
});

test('parseRunStart: an input over the cap is PAYLOAD_TOO_LARGE before any other check; within it, parse as usual', () => {
  const exact = Buffer.byteLength(JSON.stringify({ text: 'é' }));
  // A string is measured as normalizeInput measures it, as { text }: the same bytes, inclusive.
  expect(parseRunStart(StartRunBody, { agent: 'a', input: 'é' }, 'body', exact)).toEqual({ agent: 'a', input: 'é', multitask: 'enqueue' });
  expect(refusal(() => parseRunStart(StartRunBody, { agent: 'a', input: 'é' }, 'body', exact - 1))).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: `input is over ${exact - 1} bytes; MAX_INPUT_BYTES is ${exact - 1}` });
  const wide = JSON.parse(`{"agent":"a","input":{"__proto__":{},${Array.from({ length: 1000 }, (_, i) => `"k${i}":0`).join(',')}}}`);
  expect(refusal(() => parseRunStart(StartRunBody, wide, 'body', 1000))).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: 'input is over 1000 bytes; MAX_INPUT_BYTES is 1000' });
  expect(refusal(() => parseRunStart(StartRunBody, wide, 'body', 100_000))).toEqual({ code: 'BAD_REQUEST', message: expect.stringContaining('"__proto__" is not allowed') });
  expect(refusal(() => parseRunStart(StartRunBody, { agent: 'a' }, 'body', 1000))).toEqual({ code: 'BAD_REQUEST', message: expect.stringMatching(/^invalid body: input: /) });
  expect(refusal(() => parseRunStart(StartRunBody, 'x'.repeat(5000), 'body', 1000))).toEqual({ code: 'BAD_REQUEST', message: expect.stringMatching(/^invalid body: body: /) });
});

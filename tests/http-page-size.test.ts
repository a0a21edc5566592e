/**
 * HTTP pages of messages and events are capped by size (1 MiB) as well as by count, like the socket's history:
 * a page holds at least one item (so paging advances, even past an item larger than the cap), and its cursor
 * continues exactly after the last item it holds.
 */
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient } from './helpers/client';

const PAGE_MAX_BYTES = 1024 * 1024;
const bytesOf = (items: unknown[]) => items.reduce<number>((n, item) => n + Buffer.byteLength(JSON.stringify(item)), 0);

let server: TestServer;
let u: UserClient;
let threadId: string;
let bigRunId: string;

beforeAll(async () => {
  // A result larger than a page: the page holding it holds it alone.
  server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, MAX_RESULT_BYTES: String(4 * 1024 * 1024) });
  u = await UserClient.connect(server.url, 'page-size-user');
  // 10 echo runs of ~60 KB: 20 messages, ~1.2 MB in all.
  const text = 'a'.repeat(60_000);
  const first = await u.start({ agent: 'echo', input: text });
  threadId = first.thread_id;
  await u.waitForRun(first.run_id);
  for (let i = 1; i < 10; i++) await u.waitForRun((await u.start({ agent: 'echo', input: text, thread_id: threadId })).run_id);
  // 30 events of ~60 KB, then a result (its agent_completed event and its answer) of ~1.8 MB.
  const big = await u.start({ agent: 'streamer', input: { text: 'big', parts: 30, pad: 60_000, delay: 0 }, thread_id: threadId });
  bigRunId = big.run_id;
  await u.waitForRun(bigRunId);
}, 120_000);
afterAll(async () => {
  u.close();
  await server.stop();
});

test('GET /v1/threads/:id/messages: pages of at most 1 MiB (or one message), next_after continuing after the last', async () => {
  const seen: any[] = [];
  let pages = 0;
  for (let after: number | null = 0; after !== null; pages++) {
    const res = await u.http('GET', `/v1/threads/${threadId}/messages?limit=100&after=${after}`);
    expect(res.status).toBe(200);
    const { messages, next_after } = res.body;
    expect(messages.length).toBeGreaterThan(0);
    if (messages.length > 1) expect(bytesOf(messages)).toBeLessThanOrEqual(PAGE_MAX_BYTES);
    if (next_after !== null) expect(next_after).toBe(messages.at(-1).id);
    seen.push(...messages);
    after = next_after;
    expect(pages).toBeLessThan(20);
  }
  // 22 messages, ~3 MB: split by size although limit=100 would take them all; each once, in order.
  expect(seen).toHaveLength(22);
  expect(pages).toBeGreaterThanOrEqual(3);
  expect(new Set(seen.map((m) => m.id)).size).toBe(22);
  expect(seen.map((m) => m.id)).toEqual([...seen.map((m) => m.id)].sort((a, b) => a - b));
  expect(seen.map((m) => m.role)).toEqual(Array.from({ length: 11 }, () => ['user', 'assistant']).flat());
  expect(Buffer.byteLength(seen.at(-1).content)).toBeGreaterThan(PAGE_MAX_BYTES); // the answer alone on its page
});

test('GET /v1/runs/:id/events: pages of at most 1 MiB (or one event), next_after_seq continuing after the last', async () => {
  const seqs: number[] = [];
  const types: string[] = [];
  let pages = 0;
  for (let after: number | null = 0; after !== null; pages++) {
    const res = await u.http('GET', `/v1/runs/${bigRunId}/events?limit=1000&after_seq=${after}`);
    expect(res.status).toBe(200);
    const { events, next_after_seq } = res.body;
    expect(events.length).toBeGreaterThan(0);
    if (events.length > 1) expect(bytesOf(events)).toBeLessThanOrEqual(PAGE_MAX_BYTES);
    expect(next_after_seq === null || next_after_seq === events.at(-1).seq).toBe(true);
    seqs.push(...events.map((e: any) => e.seq));
    types.push(...events.map((e: any) => e.type));
    after = next_after_seq;
    expect(pages).toBeLessThan(20);
  }
  // Every logged event once, in order, the terminal one last (alone on its page: it is larger than a page).
  expect(pages).toBeGreaterThanOrEqual(3);
  expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  expect(types.filter((t) => t === 'partial_result')).toHaveLength(30);
  expect(types.at(-1)).toBe('agent_completed');
  // The end of the log: an empty page without a next cursor.
  const end = await u.http('GET', `/v1/runs/${bigRunId}/events?after_seq=${seqs.at(-1)}`);
  expect(end.body).toMatchObject({ events: [], next_after_seq: null });
});

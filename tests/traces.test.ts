/**
 * Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, a real front exports each run's spans over OTLP/HTTP (JSON
 * here) to a receiver in this test: one trace per run, its parts under the root, the model calls (timed by
 * the cell's broker) and tool calls (the thread's tool events) under the execution, a failed run's error
 * status, the trace id on the front's log lines, and no content. Unset, the front loads no OpenTelemetry SDK.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startFakeOpenAI, type FakeOpenAI, type SeenRequest, type Reply } from './helpers/fake-openai';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number; message?: string };
}
const STATUS_ERROR = 2;

/** An OTLP/HTTP receiver: keeps every JSON span posted to /v1/traces (with its service), and every raw post. */
async function startReceiver() {
  const spans: (OtlpSpan & { service: unknown })[] = [];
  const posts: { contentType: string; body: Buffer }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const contentType = String(req.headers['content-type']);
      if (req.method === 'POST' && req.url === '/v1/traces') posts.push({ contentType, body });
      if (req.method === 'POST' && req.url === '/v1/traces' && contentType.startsWith('application/json')) {
        const payload = JSON.parse(body.toString('utf8')) as { resourceSpans: { resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: { spans: OtlpSpan[] }[] }[] };
        for (const rs of payload.resourceSpans) {
          const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue;
          for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, service });
        }
      }
      res.writeHead(200, { 'content-type': contentType }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, posts, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v ? (v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.boolValue)) : undefined;
};

function script(req: SeenRequest): Reply {
  if (req.prompt === 'what is 2*(3+4)?') {
    if (req.toolResults.length === 0) return { steps: [{ toolCall: { id: 'call_calc', name: 'calculator', arguments: '{"expression":"2*(3+4)"}' } }] };
    return { steps: [{ text: `The result is ${JSON.parse(req.toolResults[0].content).result}.` }] };
  }
  if (req.prompt === 'call a missing tool') {
    if (req.toolResults.length === 0) return { steps: [{ toolCall: { id: 'call_missing', name: 'no_such_tool', arguments: '{}' } }] };
    return { steps: [{ text: 'done' }] };
  }
  return { status: 400, message: 'the fake model refuses this' };
}

/**
 * A preload for the front that writes, at exit, which OpenTelemetry modules it had loaded. Its main thread only:
 * NODE_OPTIONS' preload runs in the front's worker threads too (the WAL checkpointer), whose own exits wrote the same
 * file at the same moment (a busy machine interleaved the two writes).
 */
function moduleProbe(dir: string): { env: Record<string, string>; loaded: () => string[] } {
  const probe = path.join(dir, 'probe.cjs');
  const out = path.join(dir, 'modules.json');
  fs.writeFileSync(
    probe,
    `if (require('worker_threads').isMainThread) process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(Object.keys(require.cache).filter((k) => k.includes('@opentelemetry')))));\n`,
  );
  return { env: { NODE_OPTIONS: `--require ${probe}` }, loaded: () => JSON.parse(fs.readFileSync(out, 'utf8')) as string[] };
}

let receiver: Awaited<ReturnType<typeof startReceiver>>;
let fake: FakeOpenAI;

beforeAll(async () => {
  receiver = await startReceiver();
  fake = await startFakeOpenAI(script);
});
afterAll(async () => {
  await fake?.close();
  await receiver?.close();
});

describe('with OTEL_EXPORTER_OTLP_ENDPOINT set', () => {
  let server: TestServer;
  let probe: ReturnType<typeof moduleProbe>;
  const runs = { ok: '', failed: '', chatty: '', missingTool: '', cellKilled: '', user: 'traced-user' };

  beforeAll(async () => {
    probe = moduleProbe(fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-traces-')));
    server = await startServer({
      ...probe.env,
      AGENTS_DIR: FIXTURE_AGENTS,
      ENABLE_CHAOS_AGENTS: '1',
      LLM_BASE_URL: `${fake.url}/v1`,
      LLM_MODEL: 'fake-model',
      LLM_API_KEY: 'sk-fake-key',
      RUN_TIMEOUT_MS: '60000',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'atoll-under-test',
    });
    const u = await UserClient.connect(server.url, runs.user);
    try {
      runs.ok = (await u.start({ agent: 'llm', input: 'what is 2*(3+4)?' })).run_id;
      expect(terminal(await u.waitForRun(runs.ok)).payload.status).toBe('completed');
      runs.failed = (await u.start({ agent: 'llm', input: 'refuse this' })).run_id;
      expect(terminal(await u.waitForRun(runs.failed)).payload.status).toBe('failed');
      runs.chatty = (await u.start({ agent: 'chatty', input: 'log this' })).run_id;
      expect(terminal(await u.waitForRun(runs.chatty)).payload.status).toBe('completed');
      runs.missingTool = (await u.start({ agent: 'llm', input: 'call a missing tool' })).run_id;
      expect(terminal(await u.waitForRun(runs.missingTool)).payload.status).toBe('completed');
      // Kills its cell (SIGABRT), alone in it: the culprit, failed without another attempt.
      runs.cellKilled = (await u.start({ agent: 'chaos', input: { text: 'abort', mode: 'abort' } })).run_id;
      expect(terminal(await u.waitForRun(runs.cellKilled, 60_000)).payload.status).toBe('failed');
    } finally {
      u.close();
    }
    // A graceful stop exports what is still buffered: after it, every span of every run has been received.
    expect(await server.stop()).toBe(0);
  }, 240_000);
  afterAll(async () => {
    if (server?.proc.exitCode === null) await server.stop();
  });

  const traceOf = (runId: string) => {
    const roots = receiver.spans.filter((s) => s.name === 'atoll.run' && attr(s, 'atoll.run.id') === runId);
    expect(roots).toHaveLength(1);
    const root = roots[0];
    const spans = receiver.spans.filter((s) => s.traceId === root.traceId);
    const one = (name: string) => {
      const found = spans.filter((s) => s.name === name);
      expect(found.map((s) => s.name)).toEqual([name]);
      return found[0];
    };
    return { root, spans, one };
  };

  test('one trace per run: the run, its acceptance, queue wait, dispatch, execution and terminal event, in order', () => {
    const ok = traceOf(runs.ok);
    const failed = traceOf(runs.failed);
    expect(ok.root.traceId).not.toBe(failed.root.traceId);
    expect(ok.root.parentSpanId ?? '').toBe('');
    expect(ok.root.service).toBe('atoll-under-test');
    expect({ run: attr(ok.root, 'atoll.run.id'), user: attr(ok.root, 'atoll.user.id'), agent: attr(ok.root, 'atoll.agent'), status: attr(ok.root, 'atoll.run.status') }).toEqual({
      run: runs.ok,
      user: runs.user,
      agent: 'llm',
      status: 'completed',
    });
    expect(ok.root.status?.code ?? 0).not.toBe(STATUS_ERROR);
    const parts = ['atoll.accept', 'atoll.queue', 'atoll.dispatch', 'atoll.execute', 'atoll.terminal'].map((name) => ok.one(name));
    for (const part of parts) expect(part.parentSpanId).toBe(ok.root.spanId);
    // Inside the run, each part starting once the one before it has ended (nanosecond strings: compared as BigInt).
    const ns = (t: string) => BigInt(t);
    expect(ns(parts[0].startTimeUnixNano)).toBeGreaterThanOrEqual(ns(ok.root.startTimeUnixNano));
    for (let i = 1; i < parts.length; i++) expect(ns(parts[i].startTimeUnixNano)).toBeGreaterThanOrEqual(ns(parts[i - 1].endTimeUnixNano));
    expect(ns(ok.root.endTimeUnixNano)).toBeGreaterThanOrEqual(ns(parts[4].endTimeUnixNano));
  });

  test("the model calls (timed in the cell) and the tool call (the thread's events) are children of the execution", () => {
    const ok = traceOf(runs.ok);
    const execute = ok.one('atoll.execute');
    const chats = ok.spans.filter((s) => s.name === 'chat');
    // Asked for the tool, then answered with its result: two model calls.
    expect(chats).toHaveLength(2);
    for (const chat of chats) {
      expect(chat.parentSpanId).toBe(execute.spanId);
      expect([attr(chat, 'atoll.model.outcome'), attr(chat, 'http.response.status_code')]).toEqual(['ok', 200]);
    }
    const tool = ok.one('execute_tool calculator');
    expect(tool.parentSpanId).toBe(execute.spanId);
    expect([attr(tool, 'gen_ai.tool.name'), attr(tool, 'gen_ai.tool.call.id')]).toEqual(['calculator', 'call_calc']);
    expect(tool.status?.code ?? 0).not.toBe(STATUS_ERROR);
    // Between the two model calls.
    const [first, second] = [...chats].sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1));
    expect(BigInt(tool.startTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(first.startTimeUnixNano));
    expect(BigInt(tool.endTimeUnixNano)).toBeLessThanOrEqual(BigInt(second.endTimeUnixNano));
  });

  test('a failed run: error status on the run, its execution and its model call, with the error code only', () => {
    const failed = traceOf(runs.failed);
    expect(failed.root.status?.code).toBe(STATUS_ERROR);
    expect(attr(failed.root, 'atoll.run.status')).toBe('failed');
    expect(attr(failed.root, 'atoll.error.code')).toEqual(expect.any(String));
    expect(failed.one('atoll.execute').status?.code).toBe(STATUS_ERROR);
    const chat = failed.one('chat');
    expect([chat.status?.code, attr(chat, 'atoll.model.outcome'), attr(chat, 'http.response.status_code')]).toEqual([STATUS_ERROR, 'http_error', 400]);
  });

  test('a failed tool call has status error', () => {
    const tool = traceOf(runs.missingTool).one('execute_tool no_such_tool');
    expect(tool.status?.code).toBe(STATUS_ERROR);
    expect(tool.parentSpanId).toBe(traceOf(runs.missingTool).one('atoll.execute').spanId);
  });

  test('a run whose cell was killed under it: its spans still end, in error, with the code of its terminal event', () => {
    const killed = traceOf(runs.cellKilled);
    const code = server.logs.find((l) => l.msg === 'run finished' && l.run_id === runs.cellKilled)?.code;
    expect(code).toEqual(expect.any(String));
    expect([killed.root.status?.code, killed.root.status?.message, attr(killed.root, 'atoll.error.code')]).toEqual([STATUS_ERROR, code, code]);
    expect([killed.one('atoll.execute').status?.code, killed.one('atoll.execute').status?.message]).toEqual([STATUS_ERROR, code]);
    killed.one('atoll.terminal');
  });

  test('no content in any span: no input, no answer, no tool parameters or results, no error message', () => {
    const text = JSON.stringify(receiver.spans);
    for (const content of ['2*(3+4)', 'log this', 'The result is', 'refuse this', 'the fake model refuses', 'sk-fake-key']) expect(text).not.toContain(content);
  });

  test("a run's log lines carry its trace id: the front's, and its worker thread's (the agent's ctx.log included); the SDK was loaded", () => {
    for (const runId of [runs.ok, runs.failed, runs.chatty]) {
      const finished = server.logs.find((l) => l.msg === 'run finished' && l.run_id === runId);
      expect(finished?.trace_id).toBe(traceOf(runId).root.traceId);
    }
    const agentLines = server.logs.filter((l) => l.run_id === runs.chatty && l.from === 'agent');
    expect(agentLines.map((l) => [l.msg, l.trace_id])).toEqual([
      ['chatty starts', traceOf(runs.chatty).root.traceId],
      ['chatty ends', traceOf(runs.chatty).root.traceId],
    ]);
    expect(probe.loaded().some((m) => m.includes('@opentelemetry/sdk-trace'))).toBe(true);
  });
});

/** One completed run of `agent` on `server`, then a graceful stop that must exit 0; returns the run's id. */
async function oneRunThenStop(server: TestServer, userId: string, agent: string, input: string): Promise<string> {
  const u = await UserClient.connect(server.url, userId);
  let runId: string;
  let exit: number | null;
  try {
    runId = (await u.start({ agent, input })).run_id;
    expect(terminal(await u.waitForRun(runId)).payload.status).toBe('completed');
  } finally {
    u.close();
    exit = await server.stop();
  }
  expect(exit).toBe(0);
  return runId;
}

describe('with the default protocol', () => {
  test('the spans go out as OTLP protobuf (application/x-protobuf to /v1/traces)', async () => {
    const before = receiver.posts.length;
    const server = await startServer({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    const runId = await oneRunThenStop(server, 'proto-user', 'echo', 'proto');
    const posts = receiver.posts.slice(before);
    expect(posts.length).toBeGreaterThan(0);
    expect(posts.every((p) => p.contentType === 'application/x-protobuf')).toBe(true);
    // Protobuf strings are their UTF-8 bytes: the run's id and its spans' names are in the request.
    const body = Buffer.concat(posts.map((p) => p.body));
    for (const text of [runId, 'atoll.run', 'atoll.execute', 'atoll.terminal']) expect(body.includes(Buffer.from(text))).toBe(true);
  }, 120_000);
});

describe('with OTEL_EXPORTER_OTLP_ENDPOINT unset', () => {
  test('the front loads no OpenTelemetry SDK or exporter, and its log lines carry no trace id', async () => {
    const probe = moduleProbe(fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-traces-')));
    const received = receiver.spans.length;
    const server = await startServer({ ...probe.env, LLM_BASE_URL: `${fake.url}/v1`, LLM_MODEL: 'fake-model', RUN_TIMEOUT_MS: '60000' });
    const runId = await oneRunThenStop(server, 'untraced-user', 'llm', 'what is 2*(3+4)?');
    // The API package alone is always there: prom-client requires it (for exemplars), a no-op without an SDK.
    expect(probe.loaded().filter((m) => !m.includes(`${path.sep}@opentelemetry${path.sep}api${path.sep}`))).toEqual([]);
    const finished = server.logs.find((l) => l.msg === 'run finished' && l.run_id === runId);
    expect(finished).toBeDefined();
    expect(finished).not.toHaveProperty('trace_id');
    expect(server.logs.filter((l) => 'trace_id' in l)).toEqual([]);
    expect(receiver.spans.length).toBe(received);
  }, 120_000);
});

/**
 * Span names are a trace backend's index (Jaeger's operation list, Tempo's span-metrics labels): a tool call's
 * span is named after its tool, and the tool's name is the model's or the agent's choice. A tracer keeps its own
 * name for the first tools it sees only; later ones share `execute_tool (other)`, their name still in the
 * `gen_ai.tool.name` attribute.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFakeOpenAI, type FakeOpenAI, type SeenRequest, type Reply } from './helpers/fake-openai';
import { startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const MAX_TOOL_SPAN_NAMES = 32;
const CALLS_PER_RUN = 30;

interface OtlpSpan {
  name: string;
  attributes: { key: string; value: { stringValue?: string } }[];
}

/** An OTLP/HTTP (JSON) receiver keeping every span posted to /v1/traces. */
async function startReceiver() {
  const spans: OtlpSpan[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') {
        const payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
        for (const rs of payload.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Asks for CALLS_PER_RUN tools named after the prompt at once (the llm agent runs 16 of them a turn), then ends. */
function script(req: SeenRequest): Reply {
  if (req.toolResults.length > 0) return { steps: [{ text: 'done' }] };
  return { steps: Array.from({ length: CALLS_PER_RUN }, (_, i) => ({ toolCall: { id: `call_${i}`, name: `${req.prompt}_${i}`, arguments: '{}', index: i, pieces: 1 } })) };
}

let receiver: Awaited<ReturnType<typeof startReceiver>>;
let fake: FakeOpenAI;
let server: TestServer;

beforeAll(async () => {
  receiver = await startReceiver();
  fake = await startFakeOpenAI(script);
  server = await startServer({
    LLM_BASE_URL: `${fake.url}/v1`,
    LLM_MODEL: 'fake-model',
    LLM_API_KEY: 'sk-fake-key',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  });
});
afterAll(async () => {
  if (server?.proc.exitCode === null) await server.stop();
  await fake?.close();
  await receiver?.close();
});

test(`tools named by the model: at most ${MAX_TOOL_SPAN_NAMES} distinct tool span names, every name kept as an attribute`, async () => {
  const u = await UserClient.connect(server.url, 'names-user');
  try {
    for (const prompt of ['alpha', 'beta', 'gamma']) {
      const { run_id } = await u.start({ agent: 'llm', input: prompt });
      expect(terminal(await u.waitForRun(run_id)).payload.status).toBe('completed');
    }
  } finally {
    u.close();
  }
  // A graceful stop exports what is still buffered.
  expect(await server.stop()).toBe(0);
  const tools = receiver.spans.filter((s) => s.name.startsWith('execute_tool'));
  const toolNames = new Set(tools.map((s) => s.attributes.find((a) => a.key === 'gen_ai.tool.name')?.value.stringValue));
  const spanNames = new Set(tools.map((s) => s.name));
  // The model did name more tools than that (so the bound is what held the span names).
  expect(toolNames.size).toBeGreaterThan(MAX_TOOL_SPAN_NAMES);
  expect(spanNames.size).toBeLessThanOrEqual(MAX_TOOL_SPAN_NAMES);
  expect(spanNames).toContain('execute_tool alpha_0');
  expect(spanNames).toContain('execute_tool (other)');
}, 120_000);

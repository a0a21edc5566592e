/**
 * The `llm` agent and ctx.llm against a local fake OpenAI-compatible server: streaming and coalescing,
 * tool calls (built-in and a plugin's own), bad arguments, tool timeouts, HTTP errors, stop and timeout
 * mid-stream and mid-tool (the HTTP request is aborted, the thread stays usable), the bounded conversation
 * context, the turn budget, and the clear failure when no model is configured.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFakeOpenAI, type FakeOpenAI, type Reply, type SeenRequest, type Step } from './helpers/fake-openai';
import { startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, terminal, type Envelope } from './helpers/client';
import { evaluateArithmetic } from '../workers/tools/arithmetic';
import { prepareTools } from '../workers/llm/tool-set';
import { loadContext } from '../workers/llm/history';
import type { MessageView, ScopedDb } from '../workers/agent-contract';

const HELLO = 'Hello! I am the fake model, streaming this answer to you one small token at a time.';
/** Three-character tokens: many more tokens than a coalesced stream has events. */
const tokens = (text: string, delayMs = 0): Step[] =>
  (text.match(/.{1,3}/gs) ?? []).flatMap((t) => (delayMs ? [{ delayMs }, { text: t }] : [{ text: t }]));

/** The fake model's behaviour, chosen by the last user message. */
function script(req: SeenRequest): Reply {
  const results = req.toolResults.map((r) => JSON.parse(r.content));
  switch (req.prompt) {
    case 'hello':
      return { steps: tokens(HELLO) };
    case 'slow words':
      return { steps: [{ text: 'one ' }, { delayMs: 150 }, { text: 'two ' }, { delayMs: 150 }, { text: 'three ' }, { delayMs: 150 }, { text: 'four' }] };
    case 'what is 2*(3+4)?':
      if (results.length === 0) {
        return {
          steps: [
            { reasoning: 'I should use the calculator.' },
            { text: 'Let me compute.' },
            { toolCall: { id: 'call_calc', name: 'calculator', arguments: '{"expression":"2*(3+4)"}', pieces: 3 } },
          ],
        };
      }
      return { steps: tokens(`The result is ${results[0].result}.`) };
    case 'time in tokyo':
      if (results.length === 0) return { steps: [{ toolCall: { id: 'call_time', name: 'current_time', arguments: '{"time_zone":"Asia/Tokyo"}' } }] };
      return { steps: [{ text: `In Tokyo it is ${results[0].local} (UTC${results[0].utc_offset}).` }] };
    case 'bad tool calls':
      if (results.length === 0) {
        return {
          steps: [
            { toolCall: { index: 0, id: 'call_schema', name: 'calculator', arguments: '{"expr": 5}' } },
            { toolCall: { index: 1, id: 'call_json', name: 'calculator', arguments: '{not json' } },
            { toolCall: { index: 2, id: 'call_unknown', name: 'no_such_tool', arguments: '{}' } },
          ],
        };
      }
      return { steps: [{ text: `errors: ${results.map((r) => (r.error ? 'E' : 'ok')).join(',')}` }] };
    case 'stubborn tool':
    case 'boom tool':
      if (results.length === 0) return { steps: [{ toolCall: { id: `call_${req.prompt.split(' ')[0]}`, name: req.prompt.split(' ')[0], arguments: '{}' } }] };
      return { steps: [{ text: `the tool said: ${results[0].error}` }] };
    case 'wait tool':
      if (results.length === 0) return { steps: [{ toolCall: { id: 'call_wait', name: 'wait', arguments: '{"ms":20000}' } }] };
      return { steps: [{ text: 'waited' }] };
    case 'loop':
      if (req.body.tool_choice === 'none') return { steps: [{ text: 'I give up looping.' }] };
      return { steps: [{ toolCall: { id: `call_loop_${req.toolResults.length}`, name: 'calculator', arguments: '{"expression":"1+1"}' } }] };
    case 'fail please':
      return { status: 500, message: 'the fake model is on fire' };
    case 'refuse my key':
      return { status: 401, message: 'Incorrect API key provided: sk-fake-***-wxyz' };
    case 'stall':
    case 'stall until the timeout':
      return { steps: [{ text: 'Partial ' }, { text: 'answer' }, { stall: true }] };
    default:
      return { steps: [{ text: 'You said: ' }, { text: req.prompt }] };
  }
}

/** A plain-JavaScript plugin agent that adds its own tools to the built-in ones, as README shows. */
const PLUGIN = `
export default class ToolsDemo {
  static agentName = 'tools-demo';
  static description = 'ctx.llm with its own tools (test plugin)';
  async execute(ctx) {
    const wait = {
      name: 'wait', description: 'Waits ms milliseconds.', timeoutMs: 20000,
      parameters: { type: 'object', properties: { ms: { type: 'integer', minimum: 0 } }, required: ['ms'], additionalProperties: false },
      handler: ({ ms }, { signal }) => new Promise((resolve, reject) => {
        const t = setTimeout(() => resolve({ waited: ms }), ms);
        signal.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason); }, { once: true });
      }),
    };
    const stubborn = { name: 'stubborn', description: 'Never answers and ignores its signal.', parameters: { type: 'object', properties: {} }, handler: () => new Promise(() => {}) };
    const boom = { name: 'boom', description: 'Always fails.', parameters: { type: 'object', properties: {} }, handler: () => { throw new Error('boom: the tool broke'); } };
    const result = await ctx.llm.chat({
      system: 'You are the tools demo.',
      tools: [...ctx.llm.builtinTools, wait, stubborn, boom],
      maxTurns: typeof ctx.input.max_turns === 'number' ? ctx.input.max_turns : 3,
    });
    return { text: result.text, turns: result.turns, tool_calls: result.toolCalls, configured: ctx.llm.configured, model: ctx.llm.model };
  }
}
`;

/** The engine aborts the model request through ctx.signal, not by tearing the worker down later. */
const PROMPT_ABORT_MS = 1500;
const RUN_TIMEOUT_MS = 10_000;
/** A stop the agent honoured ends the run cooperatively; one it ignored ends with its worker terminated. */
const expectCooperativeStop = (events: Envelope[]) => expect(terminal(events).payload.error.message).not.toMatch(/terminated/);
const recycledFor = (runId: string) => server.logs.filter((l) => l.run_id === runId && typeof l.recycled === 'string');
const ofType = (events: Envelope[], type: string) => events.filter((e) => e.type === type);
const partialText = (events: Envelope[]) => ofType(events, 'partial_result').map((e) => e.payload.text).join('');

let fake: FakeOpenAI;
let server: TestServer;
const clients: UserClient[] = [];
const connect = async (user: string) => {
  const c = await UserClient.connect(server.url, user);
  clients.push(c);
  return c;
};

beforeAll(async () => {
  const pluginDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-llm-plugins-'));
  fs.writeFileSync(path.join(pluginDir, 'tools-demo.mjs'), PLUGIN);
  fake = await startFakeOpenAI(script);
  server = await startServer({
    AGENTS_DIR: pluginDir,
    LLM_BASE_URL: `${fake.url}/v1`,
    LLM_MODEL: 'fake-model',
    LLM_API_KEY: 'sk-fake-key',
    LLM_MAX_CONTEXT_MESSAGES: '4',
    TOOL_TIMEOUT_MS: '300',
    // Wide enough for a tool-calling run on a starved CI machine; the stall test waits it out once.
    RUN_TIMEOUT_MS: String(RUN_TIMEOUT_MS),
    // Each user's first run here starts in a fresh worker and reads the thread's history: loading Prisma's query
    // compiler there (~1 s of CPU) took most of the run's deadline beside two CPU burners. These tests are about the
    // llm agent, so every worker loads it while warming up instead (WORKER_DB_WARMUP's own tests: spine, db-wall).
    WORKER_DB_WARMUP: 'eager',
  });
});
afterAll(async () => {
  clients.forEach((c) => c.close());
  await server?.stop();
  await fake?.close();
});

describe('the llm agent against an OpenAI-compatible endpoint', () => {
  test('streams tokens as coalesced partial_result events; the answer is the result and the stored assistant message', async () => {
    const u = await connect('llm-stream');
    const { run_id, thread_id } = await u.start({ agent: 'llm', input: 'hello' });
    const events = await u.waitForRun(run_id);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', success: true, final_response: HELLO });
    const partials = ofType(events, 'partial_result');
    expect(partialText(events)).toBe(HELLO);
    expect(partials.length).toBeGreaterThanOrEqual(1);
    expect(partials.length).toBeLessThan(tokens(HELLO).length / 4);

    const [req] = fake.requestsFor('hello');
    expect(req.refused).toBeNull();
    expect(req.headers.authorization).toBe('Bearer sk-fake-key');
    expect(req.body).toMatchObject({ model: 'fake-model', stream: true });
    expect(req.body).not.toHaveProperty('tool_choice');
    expect(req.body.messages[0].role).toBe('system');
    expect(req.body.messages.at(-1)).toEqual({ role: 'user', content: 'hello' });
    expect(req.body.tools.map((t: any) => t.function.name)).toEqual(['current_time', 'calculator']);

    const stored = await u.http('GET', `/v1/threads/${thread_id}/messages`);
    expect(stored.body.messages.map((m: any) => [m.role, m.content, m.status])).toEqual([
      ['user', 'hello', 'complete'],
      ['assistant', HELLO, 'complete'],
    ]);
  });

  test('a slow stream is flushed by time, so text shows up while the model is still writing', async () => {
    const u = await connect('llm-slow');
    const { run_id } = await u.start({ agent: 'llm', input: 'slow words' });
    const events = await u.waitForRun(run_id);
    expect(terminal(events).payload.final_response).toBe('one two three four');
    const partials = ofType(events, 'partial_result');
    // 18 characters never reach the size threshold: more than one event means the timer flushed them.
    expect(partials.length).toBeGreaterThanOrEqual(2);
    expect(partialText(events)).toBe('one two three four');
    expect(Date.parse(terminal(events).timestamp) - Date.parse(partials[0].timestamp)).toBeGreaterThanOrEqual(200);
  });

  test('a tool call runs the calculator between tool_executing and tool_completed, and the model answers with its result', async () => {
    const u = await connect('llm-calc');
    const { run_id } = await u.start({ agent: 'llm', input: 'what is 2*(3+4)?' });
    const events = await u.waitForRun(run_id);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: 'Let me compute.\n\nThe result is 14.' });
    expect(partialText(events)).toBe('Let me compute.\n\nThe result is 14.');
    expect(ofType(events, 'agent_thinking').map((e) => e.payload.reasoning).join('')).toBe('I should use the calculator.');

    const [executing] = ofType(events, 'tool_executing');
    const [completed] = ofType(events, 'tool_completed');
    expect(executing.payload).toEqual({ tool_call_id: 'call_calc', tool_name: 'calculator', parameters: { expression: '2*(3+4)' } });
    expect(completed.payload).toMatchObject({ tool_call_id: 'call_calc', tool_name: 'calculator', status: 'success', results: { expression: '2*(3+4)', result: 14 } });
    expect(completed.payload.execution_time_ms).toEqual(expect.any(Number));
    expect(executing.seq).toBeLessThan(completed.seq);

    const [first, second] = fake.requestsFor('what is 2*(3+4)?');
    expect([first.refused, second.refused]).toEqual([null, null]);
    const tail = second.body.messages.slice(-2);
    expect(tail[0]).toMatchObject({
      role: 'assistant',
      content: 'Let me compute.',
      tool_calls: [{ id: 'call_calc', type: 'function', function: { name: 'calculator', arguments: '{"expression":"2*(3+4)"}' } }],
    });
    expect(tail[1]).toMatchObject({ role: 'tool', tool_call_id: 'call_calc' });
    expect(JSON.parse(tail[1].content)).toEqual({ expression: '2*(3+4)', result: 14 });
  });

  test('current_time answers in the time zone the model asked for', async () => {
    const u = await connect('llm-time');
    const { run_id } = await u.start({ agent: 'llm', input: 'time in tokyo' });
    const events = await u.waitForRun(run_id);
    const [completed] = ofType(events, 'tool_completed');
    expect(completed.payload).toMatchObject({ tool_name: 'current_time', status: 'success', results: { time_zone: 'Asia/Tokyo', utc_offset: '+09:00' } });
    expect(Math.abs(Date.parse(completed.payload.results.utc) - Date.now())).toBeLessThan(60_000);
    expect(terminal(events).payload.final_response).toBe(`In Tokyo it is ${completed.payload.results.local} (UTC+09:00).`);
  });

  test('arguments that break the schema or are not JSON, and unknown tools, come back to the model as error results', async () => {
    const u = await connect('llm-bad-tools');
    const { run_id } = await u.start({ agent: 'llm', input: 'bad tool calls' });
    const events = await u.waitForRun(run_id);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: 'errors: E,E,E' });
    const executing = ofType(events, 'tool_executing');
    expect(executing.map((e) => e.payload.tool_call_id)).toEqual(['call_schema', 'call_json', 'call_unknown']);
    expect(executing[1].payload.parameters).toEqual({ unparsed_arguments: '{not json' });
    const completed = ofType(events, 'tool_completed');
    expect(completed.map((e) => [e.payload.tool_call_id, e.payload.status])).toEqual([
      ['call_schema', 'error'],
      ['call_json', 'error'],
      ['call_unknown', 'error'],
    ]);
    expect(completed[0].payload.results.error).toMatch(/invalid arguments: .*required property 'expression'/);
    expect(completed[0].payload.results.error).toMatch(/must NOT have additional properties \(expr\)/);
    expect(completed[1].payload.results.error).toMatch(/not valid JSON/);
    expect(completed[2].payload.results.error).toMatch(/unknown tool "no_such_tool"; available tools: current_time, calculator/);
    const second = fake.requestsFor('bad tool calls')[1];
    expect(second.refused).toBeNull();
    expect(second.toolResults.map((r) => r.tool_call_id)).toEqual(['call_schema', 'call_json', 'call_unknown']);
  });

  test('a plugin adds its own tools: a tool past its timeout and a tool that throws become error results', async () => {
    const u = await connect('llm-plugin-tools');
    const stubborn = await u.start({ agent: 'tools-demo', input: 'stubborn tool' });
    const boom = await u.start({ agent: 'tools-demo', input: 'boom tool' });
    const [se, be] = await Promise.all([u.waitForRun(stubborn.run_id), u.waitForRun(boom.run_id)]);

    const timedOut = ofType(se, 'tool_completed')[0].payload;
    expect(timedOut).toMatchObject({ tool_name: 'stubborn', status: 'error', results: { error: 'the tool timed out after 300 ms' } });
    expect(timedOut.execution_time_ms).toBeGreaterThanOrEqual(290);
    expect(timedOut.execution_time_ms).toBeLessThan(3000);
    expect(terminal(se).payload).toMatchObject({
      status: 'completed',
      final_response: { text: 'the tool said: the tool timed out after 300 ms', turns: 2, tool_calls: 1, configured: true, model: 'fake-model' },
    });

    expect(ofType(be, 'tool_completed')[0].payload).toMatchObject({ tool_name: 'boom', status: 'error', results: { error: 'the tool failed: boom: the tool broke' } });
    expect(terminal(be).payload.final_response.text).toBe('the tool said: the tool failed: boom: the tool broke');
    // The plugin's tools are offered beside the built-in ones.
    expect(fake.requestsFor('boom tool')[0].body.tools.map((t: any) => t.function.name)).toEqual(['current_time', 'calculator', 'wait', 'stubborn', 'boom']);
  });

  test('the model gets at most LLM_MAX_CONTEXT_MESSAGES earlier messages of the thread, in order, before the prompt', async () => {
    const u = await connect('llm-context');
    const first = await u.start({ agent: 'llm', input: 'say one' });
    await u.waitForRun(first.run_id);
    for (const text of ['say two', 'say three', 'context check']) {
      const r = await u.start({ agent: 'llm', input: text, thread_id: first.thread_id });
      await u.waitForRun(r.run_id);
    }
    const [req] = fake.requestsFor('context check');
    expect(req.body.messages.map((m: any) => [m.role, m.content])).toEqual([
      ['system', expect.any(String)],
      ['user', 'say two'],
      ['assistant', 'You said: say two'],
      ['user', 'say three'],
      ['assistant', 'You said: say three'],
      ['user', 'context check'],
    ]);
  });

  test('the turn budget bounds a model that keeps asking for tools: the last turn is sent with tool_choice "none"', async () => {
    const u = await connect('llm-loop');
    const { run_id } = await u.start({ agent: 'tools-demo', input: { text: 'loop', max_turns: 3 } });
    const events = await u.waitForRun(run_id);
    expect(terminal(events).payload.final_response).toMatchObject({ text: 'I give up looping.', turns: 3, tool_calls: 2 });
    expect(fake.requestsFor('loop').map((r) => r.body.tool_choice)).toEqual([undefined, undefined, 'none']);
    expect(ofType(events, 'tool_completed').map((e) => e.payload.status)).toEqual(['success', 'success']);
  });

  test('an HTTP error from the model fails the run with AGENT_ERROR, and the next run on the thread works', async () => {
    const u = await connect('llm-http-error');
    const failed = await u.start({ agent: 'llm', input: 'fail please' });
    const t = terminal(await u.waitForRun(failed.run_id)).payload;
    expect(t).toMatchObject({ status: 'failed', success: false, error: { code: 'AGENT_ERROR' } });
    // What went wrong, not where: the endpoint's address is in the run's log line, which the end user never reads.
    expect(t.error.message).toBe('the model endpoint answered HTTP 500: the fake model is on fire');
    const logged = (runId: string) => server.logs.find((l) => l.from === 'agent' && l.run_id === runId && l.msg === 'the model endpoint answered an error');
    expect(logged(failed.run_id)?.fields).toEqual({ endpoint: `${fake.url}/v1`, status: 500, detail: 'the fake model is on fire' });
    // A refusal of the server's credentials: the endpoint's text (it names the key's last characters) and the hint
    // stay in the log.
    const refused = await u.start({ agent: 'llm', input: 'refuse my key' });
    const r = terminal(await u.waitForRun(refused.run_id)).payload;
    expect(r.error).toEqual({ code: 'AGENT_ERROR', message: "the model endpoint refused this server's credentials (HTTP 401)" });
    expect(logged(refused.run_id)?.fields).toEqual({ endpoint: `${fake.url}/v1`, status: 401, detail: 'Incorrect API key provided: sk-fake-***-wxyz', hint: 'check LLM_API_KEY' });

    const next = await u.start({ agent: 'llm', input: 'are you back?', thread_id: failed.thread_id });
    expect(terminal(await u.waitForRun(next.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'You said: are you back?' });
    const [req] = fake.requestsFor('are you back?');
    expect(req.refused).toBeNull();
    expect(req.body.messages.slice(1).map((m: any) => [m.role, m.content])).toEqual([
      ['user', 'fail please'],
      ['user', 'are you back?'],
    ]);
  });

  test('stop_agent mid-stream aborts the HTTP request, keeps the streamed text, and the thread goes on', async () => {
    const u = await connect('llm-stop-stream');
    const { run_id, thread_id } = await u.start({ agent: 'llm', input: 'stall' });
    // Streamed text is flushed by time while the model stalls.
    await eventually(() => partialText(u.runEvents(run_id)) === 'Partial answer', 10_000, 20);
    expect(partialText(u.runEvents(run_id))).toBe('Partial answer');
    const stopAt = Date.now();
    const ack = await u.ack('stop_agent', { run_id });
    expect(ack).toEqual({ run_id, status: 'running' });
    const events = await u.waitForRun(run_id);
    expect(terminal(events).payload).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
    expect(partialText(events)).toBe('Partial answer');
    const [stalled] = fake.requestsFor('stall');
    expect(await eventually(() => stalled.aborted, 5000, 20)).toBe(true);
    expect(stalled.ended).toBe(false);
    expect(stalled.closedAt! - stopAt).toBeLessThan(PROMPT_ABORT_MS);
    expect(recycledFor(run_id)).toEqual([]);
    expectCooperativeStop(events);

    const next = await u.start({ agent: 'llm', input: 'after the stop', thread_id });
    expect(terminal(await u.waitForRun(next.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'You said: after the stop' });
    const [req] = fake.requestsFor('after the stop');
    expect(req.refused).toBeNull();
    expect(req.body.messages[1]).toEqual({ role: 'user', content: 'stall' });
  });

  test('RUN_TIMEOUT_MS mid-stream aborts the HTTP request and times the run out', async () => {
    const u = await connect('llm-timeout');
    const { run_id } = await u.start({ agent: 'llm', input: 'stall until the timeout' });
    const events = await u.waitForRun(run_id, 40_000);
    expect(terminal(events).payload).toMatchObject({ status: 'timeout', error: { code: 'TIMEOUT' } });
    expect(partialText(events)).toBe('Partial answer');
    const [stalled] = fake.requestsFor('stall until the timeout');
    expect(await eventually(() => stalled.aborted, 5000, 20)).toBe(true);
    const startedAt = Date.parse(ofType(events, 'agent_started')[0].timestamp);
    expect(stalled.closedAt! - startedAt).toBeLessThan(RUN_TIMEOUT_MS + PROMPT_ABORT_MS);
    expect(recycledFor(run_id)).toEqual([]);
    expectCooperativeStop(events);
  });

  test('stop_agent mid-tool closes the tool call and leaves a conversation the next run can continue', async () => {
    const u = await connect('llm-stop-tool');
    const { run_id, thread_id } = await u.start({ agent: 'tools-demo', input: 'wait tool' });
    await u.waitForEvent(run_id, 'tool_executing');
    await u.ack('stop_agent', { run_id });
    const events = await u.waitForRun(run_id);
    expect(terminal(events).payload).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
    expectCooperativeStop(events);
    expect(recycledFor(run_id)).toEqual([]);
    // Every tool_executing has its tool_completed: no orphan call in the run's events.
    expect(ofType(events, 'tool_executing').map((e) => e.payload.tool_call_id)).toEqual(['call_wait']);
    expect(ofType(events, 'tool_completed').map((e) => e.payload)).toEqual([
      expect.objectContaining({ tool_call_id: 'call_wait', tool_name: 'wait', status: 'error', results: { error: 'the run was stopped during this tool call' } }),
    ]);
    // The model was asked once; the stop came before any answer to the tool call was sent.
    expect(fake.requestsFor('wait tool')).toHaveLength(1);

    const next = await u.start({ agent: 'llm', input: 'after the tool stop', thread_id });
    expect(terminal(await u.waitForRun(next.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'You said: after the tool stop' });
    const [req] = fake.requestsFor('after the tool stop');
    expect(req.refused).toBeNull();
    expect(req.body.messages.filter((m: any) => m.role === 'tool' || m.tool_calls)).toEqual([]);
  });

  test('no run of the llm agent leaves state behind in its worker thread', () => {
    // Leaked sockets or timers, changed globals or an agent still running after a stop retire a worker.
    expect(server.logs.filter((l) => typeof l.recycled === 'string')).toEqual([]);
  });
});

describe('the pieces, directly', () => {
  test('the calculator evaluates arithmetic without eval and refuses everything else', () => {
    expect(evaluateArithmetic('2 * (3 + 4) ^ 2 / sqrt(16)')).toBe(24.5);
    expect(evaluateArithmetic('-2^2 + 2^3^2')).toBe(508);
    expect(evaluateArithmetic('0.1 + 0.2')).toBe(0.3);
    expect(evaluateArithmetic('max(1, 5, 3) % 3 + log(8, 2) + round(pi)')).toBe(8);
    expect(() => evaluateArithmetic('1 / 0')).toThrow(/not a finite number/);
    expect(() => evaluateArithmetic('constructor')).toThrow(/unknown name "constructor"/);
    expect(() => evaluateArithmetic('process.exit(1)')).toThrow(/unexpected character "\."/);
    expect(() => evaluateArithmetic('(1 + 2')).toThrow(/expected "\)" at the end/);
    expect(() => evaluateArithmetic('('.repeat(200) + '1' + ')'.repeat(200))).toThrow(/nests deeper/);
    expect(() => evaluateArithmetic('1+'.repeat(600) + '1')).toThrow(/longer than 1000/);
  });

  test('tool definitions are checked at the boundary with messages naming the tool and the field', () => {
    const tool = { name: 'ok', description: 'fine', parameters: { type: 'object', properties: {} }, handler: () => 1 };
    expect(prepareTools([tool], 1000).names()).toEqual(['ok']);
    expect(() => prepareTools('nope', 1000)).toThrow('ctx.llm.chat: tools must be an array');
    expect(() => prepareTools([{ ...tool, name: 'has space' }], 1000)).toThrow(/tools\[0\]\.name must match/);
    expect(() => prepareTools([tool, tool], 1000)).toThrow(/tools\[1\] \(ok\): the name is used twice/);
    expect(() => prepareTools([{ ...tool, handler: undefined }], 1000)).toThrow(/\(ok\)\.handler must be a function/);
    expect(() => prepareTools([{ ...tool, parameters: { type: 'string' } }], 1000)).toThrow(/parameters must be a JSON schema with type "object"/);
    expect(() => prepareTools([{ ...tool, parameters: { type: 'object', requird: ['x'] } }], 1000)).toThrow(/not a valid JSON schema: .*requird/);
    expect(() => prepareTools([{ ...tool, timeoutMs: -1 }], 1000)).toThrow(/timeoutMs must be an integer/);
  });

  test('the context pages through a long thread, stops at the run\'s own message and replays only user and assistant text', async () => {
    const rows: MessageView[] = [];
    const add = (role: MessageView['role'], content: string, status: MessageView['status'] = 'complete') =>
      rows.push({ id: rows.length + 1, role, content, status, createdAt: new Date(0).toISOString() });
    for (let i = 0; i < 120; i++) {
      add('user', `q${i}`);
      add('assistant', `a${i}`);
    }
    add('user', 'cut short');
    add('assistant', 'half an ans', 'interrupted');
    add('tool', '{"stored":"tool row"}');
    add('user', 'the question'); // this run's own message
    add('user', 'a later run on the same thread');
    const pages: number[] = [];
    const db = {
      threads: { get: async () => null, list: async () => [] },
      messages: {
        list: async ({ limit = 50, afterId = 0 }: { limit?: number; afterId?: number } = {}) => {
          pages.push(afterId);
          return rows.filter((m) => m.id > afterId).slice(0, Math.min(limit, 100));
        },
      },
    } as ScopedDb;
    expect(await loadContext(db, 'the question', 4)).toEqual([
      { role: 'user', content: 'q119' },
      { role: 'assistant', content: 'a119' },
      { role: 'user', content: 'cut short' },
      { role: 'assistant', content: 'half an ans\n\n[this answer was interrupted]' },
    ]);
    // A short page is not the end (the gate cuts a page at 1 MiB of content): the empty page after it is.
    expect(pages).toEqual([0, 100, 200, rows.length]);
    expect(await loadContext(db, 'the question', 0)).toEqual([]);
  });
});

describe('without a configured model', () => {
  let bare: TestServer;
  beforeAll(async () => {
    bare = await startServer({});
  });
  afterAll(async () => {
    await bare?.stop();
  });

  test('the llm agent fails fast saying which variables to set, and echo still works', async () => {
    const u = await UserClient.connect(bare.url, 'llm-unconfigured');
    try {
      const agents = await u.http('GET', '/v1/agents');
      expect(agents.body.agents).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'llm', source: 'builtin' })]));
      const { run_id } = await u.start({ agent: 'llm', input: 'hello?' });
      const t = terminal(await u.waitForRun(run_id)).payload;
      expect(t).toMatchObject({ status: 'failed', error: { code: 'AGENT_ERROR' } });
      expect(t.error.message).toMatch(/no language model is configured: start Atoll with LLM_BASE_URL .* and LLM_MODEL/);
      expect(t.error.message).toMatch(/\(missing: LLM_BASE_URL and LLM_MODEL\)$/);
      const echo = await u.start({ agent: 'echo', input: 'still here' });
      expect(terminal(await u.waitForRun(echo.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'still here' });
    } finally {
      u.close();
    }
  });
});

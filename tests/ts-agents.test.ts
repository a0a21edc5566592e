/**
 * Agents in TypeScript and agents that take structured input: the contract type-checks (`atoll/agent`), the
 * front compiles AGENTS_DIR's .ts agents at start-up (a syntax error stops it, naming file and line) and
 * reuses the compilation on the next start, and every agent's input declaration is checked at acceptance.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, agentsDirWith, runServerOnce, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually } from './helpers/client';
import { cellPids } from './helpers/cell-processes';
import { runToExit } from './helpers/run-to-exit';

const FIXTURES = path.join(ROOT, 'tests/fixtures');
const TSC = path.join(ROOT, 'node_modules/typescript/bin/tsc');
const MAX_INPUT_BYTES = 1024;

test('a TypeScript agent type-checks against atoll/agent with the pinned compiler; one with a type error does not', async () => {
  const check = (dir: string) => runToExit(TSC, ['-p', path.join(FIXTURES, dir, 'tsconfig.json')], { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, timeoutMs: 240_000 });
  const good = await check('ts-agents');
  expect({ code: good.code, out: good.stdout }).toEqual({ code: 0, out: '' });
  const bad = await check('ts-agents-type-error');
  expect(bad.code).not.toBe(0);
  expect(bad.stdout).toMatch(/wrong\.ts\(6,\d+\): error TS\d+: .*'thoughts' does not exist/);
}, 500_000);

test('a .ts agent that does not compile stops the start with file:line:column and the message', async () => {
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-cache-'));
  const { code, stderr } = await runServerOnce({ AGENTS_DIR: path.join(FIXTURES, 'ts-agents-syntax-error'), AGENT_CACHE_DIR: cacheDir }, 60_000);
  fs.rmSync(cacheDir, { recursive: true, force: true });
  expect(code).toBe(1);
  expect(stderr).toMatch(new RegExp(`${path.join(FIXTURES, 'ts-agents-syntax-error', 'broken.ts').replace(/[.]/g, '\\.')}:5:\\d+: Unexpected ";"`));
});

test('an input schema that does not compile (strict: a misspelt keyword) stops the start, naming the agent', async () => {
  const { code, stderr } = await runServerOnce({ AGENTS_DIR: path.join(FIXTURES, 'bad-input-schema') }, 60_000);
  expect(code).toBe(1);
  expect(stderr).toMatch(/misspelt\.mjs: static input is not a valid JSON Schema: strict mode: unknown keyword: "requird"/);
});

describe('a server with a TypeScript agent that takes { numbers }', () => {
  let agentsDir: string;
  let cacheDir: string;
  let server: TestServer;
  let u: UserClient;

  beforeAll(async () => {
    agentsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-ts-agents-'));
    fs.cpSync(path.join(FIXTURES, 'ts-agents'), agentsDir, { recursive: true });
    // Readable (the agents) and passable (the cache's parent) by cells with OS users of their own.
    fs.chmodSync(agentsDir, 0o755);
    cacheDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-cache-')), 'agents');
    fs.chmodSync(path.dirname(cacheDir), 0o711);
    server = await startServer({ AGENTS_DIR: agentsDir, AGENT_CACHE_DIR: cacheDir, MAX_INPUT_BYTES: String(MAX_INPUT_BYTES) });
    u = await UserClient.connect(server.url, 'ts-user');
  }, 60_000);
  afterAll(async () => {
    u?.close();
    await server?.stop();
    fs.rmSync(agentsDir, { recursive: true, force: true });
    fs.rmSync(path.dirname(cacheDir), { recursive: true, force: true });
  });

  test('GET /v1/agents shows what each agent takes', async () => {
    const { body } = await u.http('GET', '/v1/agents');
    const byName = Object.fromEntries(body.agents.map((a: { name: string }) => [a.name, a]));
    expect(byName.sum).toMatchObject({ source: 'plugin', description: 'Adds up input.numbers', input: { required: ['numbers'] } });
    expect(byName.echo.input).toEqual({ type: 'object', required: ['text'], properties: { text: { type: 'string' } } });
  });

  test('structured input runs the agent, over the socket and over HTTP', async () => {
    const viaSocket = await u.start({ agent: 'sum', input: { numbers: [1, 2, 3.5] } });
    const end = (await u.waitForRun(viaSocket.run_id)).at(-1)!;
    expect(end.payload).toMatchObject({ status: 'completed', final_response: { sum: 6.5, count: 3 } });

    const thread = (await u.http('POST', '/v1/threads', {})).body;
    const viaHttp = await u.http('POST', `/v1/threads/${thread.id}/runs`, { agent: 'sum', input: { numbers: [40, 2] } });
    expect(viaHttp.status).toBe(202);
    expect(viaHttp.body.input).toEqual({ numbers: [40, 2] });
    expect((await u.waitForRun(viaHttp.body.id)).at(-1)!.payload).toMatchObject({ status: 'completed', final_response: { sum: 42, count: 2 } });
    // The thread keeps the structured input as the user's message, as JSON.
    const messages = (await u.http('GET', `/v1/threads/${thread.id}/messages`)).body.messages;
    expect(messages[0]).toMatchObject({ role: 'user', content: '{"numbers":[40,2]}' });
    u.assertClean();
  });

  test('a string is still { text }', async () => {
    const run = await u.start({ agent: 'echo', input: 'plain words' });
    expect((await u.waitForRun(run.run_id)).at(-1)!.payload).toMatchObject({ status: 'completed', final_response: 'plain words' });
    expect((await u.http('GET', `/v1/runs/${run.run_id}`)).body.input).toEqual({ text: 'plain words' });
  });

  test('input an agent does not take is refused with BAD_REQUEST at acceptance, and no run is made', async () => {
    const refused = await UserClient.connect(server.url, 'refused-user');
    try {
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ agent: 'echo', input: { numbers: [1] } }, /agent "echo" takes text: input must be a string or an object with a "text" string/],
        [{ agent: 'echo', input: { text: 5 } }, /agent "echo" takes text/],
        [{ agent: 'sum', input: { numbers: [1, 'two'] } }, /agent "sum" does not take this input: input\/numbers\/1 must be number/],
        [{ agent: 'sum', input: 'a string is {text}, not numbers' }, /agent "sum" does not take this input: input must have required property 'numbers'/],
        [{ agent: 'sum', input: [1, 2] }, /input: must be a string or a JSON object/],
      ];
      for (const [payload, message] of cases) {
        expect([payload, (await refused.ack('start_agent', payload)).error]).toEqual([payload, { code: 'BAD_REQUEST', message: expect.stringMatching(message) }]);
      }
      const thread = (await refused.http('POST', '/v1/threads', {})).body;
      for (const [payload, message] of cases) {
        const res = await refused.http('POST', `/v1/threads/${thread.id}/runs`, payload);
        expect([payload, res.status, res.body.error]).toEqual([payload, 400, { code: 'BAD_REQUEST', message: expect.stringMatching(message) }]);
      }
      // Nothing was accepted: the only thread is the one made above, and it has no message.
      expect((await refused.http('GET', '/v1/threads')).body.threads.map((t: { id: string }) => t.id)).toEqual([thread.id]);
      expect((await refused.http('GET', `/v1/threads/${thread.id}/messages`)).body.messages).toEqual([]);
    } finally {
      refused.close();
    }
  });

  test('the size limit holds for structured input: PAYLOAD_TOO_LARGE before the schema', async () => {
    const numbers = Array.from({ length: MAX_INPUT_BYTES }, (_, i) => i);
    expect((await u.ack('start_agent', { agent: 'sum', input: { numbers } })).error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', message: expect.stringMatching(/MAX_INPUT_BYTES/) });
    const thread = (await u.http('POST', '/v1/threads', {})).body;
    const res = await u.http('POST', `/v1/threads/${thread.id}/runs`, { agent: 'sum', input: { numbers } });
    expect([res.status, res.body.error.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
  });

  test('agent code cannot write the agent cache: neither another agent\'s compiled module nor a new file', async () => {
    const module = server.logs.find((l) => l.msg === 'TypeScript agent compiled' && l.agent === path.join(agentsDir, 'sum.ts'))!.module as string;
    const before = fs.readFileSync(module, 'utf8');
    for (const target of [module, path.join(cacheDir, 'planted.mjs')]) {
      const run = await u.start({ agent: 'tamper', input: { path: target } });
      expect([target, (await u.waitForRun(run.run_id)).at(-1)!.payload]).toEqual([target, expect.objectContaining({ status: 'completed', final_response: { written: false, code: 'ERR_ACCESS_DENIED' } })]);
    }
    expect(fs.readFileSync(module, 'utf8')).toBe(before);
    expect(fs.existsSync(path.join(cacheDir, 'planted.mjs'))).toBe(false);
  });

  test('the next start takes the compiled agent from the cache (no compilation), and it still runs', async () => {
    const compiledFirst = server.logs.filter((l) => l.msg === 'TypeScript agent compiled');
    expect(compiledFirst.map((l) => [l.agent, l.cache])).toEqual([path.join(agentsDir, 'sum.ts'), path.join(agentsDir, 'tamper.ts')].map((f) => [f, 'miss']));
    const module = compiledFirst[0]!.module as string;
    expect(path.dirname(module)).toBe(cacheDir);
    // Only the front can write the cache: mode 755, files 644.
    expect(fs.statSync(cacheDir).mode & 0o777).toBe(0o755);
    expect(fs.statSync(module).mode & 0o777).toBe(0o644);

    u.close();
    await server.stop();
    server = await startServer({ AGENTS_DIR: agentsDir, AGENT_CACHE_DIR: cacheDir, MAX_INPUT_BYTES: String(MAX_INPUT_BYTES) });
    u = await UserClient.connect(server.url, 'ts-user');
    expect(server.logs.filter((l) => l.msg === 'TypeScript agent compiled')).toEqual([]);
    const hits = server.logs.filter((l) => l.msg === 'TypeScript agent loaded from the cache');
    expect(hits.map((l) => [l.agent, l.cache])).toEqual([path.join(agentsDir, 'sum.ts'), path.join(agentsDir, 'tamper.ts')].map((f) => [f, 'hit']));
    expect(hits[0]!.module).toBe(module);
    const run = await u.start({ agent: 'sum', input: { numbers: [2, 3] } });
    expect((await u.waitForRun(run.run_id)).at(-1)!.payload).toMatchObject({ status: 'completed', final_response: { sum: 5 } });
  }, 90_000);
});

describe('input schemas declaring an $id', () => {
  const ID = 'https://example.test/atoll-input';
  const agent = (name: string, field: string, type: string) => `export default class A {
  static agentName = ${JSON.stringify(name)};
  static description = 'takes { ${field} }';
  static input = { $id: ${JSON.stringify(ID)}, type: 'object', required: [${JSON.stringify(field)}], properties: { ${field}: { type: ${JSON.stringify(type)} } } };
  async execute(ctx) { return 'took ' + Object.keys(ctx.input).join(','); }
}`;
  let agentsDir: string;
  let server: TestServer;
  let u: UserClient;

  beforeAll(async () => {
    agentsDir = agentsDirWith({ 'first.mjs': agent('first', 'a', 'string'), 'second.mjs': agent('second', 'b', 'number') });
    server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1' });
    u = await UserClient.connect(server.url, 'schema-id-user');
  }, 60_000);
  afterAll(async () => {
    u?.close();
    await server?.stop();
    fs.rmSync(agentsDir, { recursive: true, force: true });
  });

  const outcome = async (payload: Record<string, unknown>) => {
    const ack = await u.ack('start_agent', payload);
    if (ack.error) return ack.error.code as string;
    return (await u.waitForRun(ack.run_id)).at(-1)!.payload.final_response as string;
  };

  // One Ajv for every agent refused the second schema with an $id it already held: every run of that agent failed
  // with INTERNAL until the front restarted.
  test('two agents declaring one $id are each checked against their own schema', async () => {
    expect(await outcome({ agent: 'first', input: { a: 'x' } })).toBe('took a');
    expect(await outcome({ agent: 'second', input: { b: 1 } })).toBe('took b');
    expect(await outcome({ agent: 'second', input: { a: 'x' } })).toBe('BAD_REQUEST');
    expect(await outcome({ agent: 'first', input: { b: 1 } })).toBe('BAD_REQUEST');
  });

  test('an agent redeployed with another schema under the same $id is checked against the new one once its cell restarts', async () => {
    fs.writeFileSync(path.join(agentsDir, 'second.mjs'), agent('second', 'c', 'boolean'));
    for (const pid of cellPids(server.proc.pid!)) process.kill(pid, 'SIGKILL');
    const takesC = async () => ((await u.http('GET', '/v1/agents')).body.agents ?? []).find((a: { name: string }) => a.name === 'second')?.input?.required?.[0] === 'c';
    expect(await eventually(takesC, 30_000, 100)).toBe(true);
    expect(await outcome({ agent: 'second', input: { c: true } })).toBe('took c');
    expect(await outcome({ agent: 'second', input: { b: 1 } })).toBe('BAD_REQUEST');
  });
});

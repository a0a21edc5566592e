/**
 * The database wall: workers hold no database connection; their Prisma client's statements go to the
 * front's gate, which executes only ctx.db's statements for the run's own user. Agent code that gets hold
 * of its run's port (here: by patching MessagePort.prototype.postMessage) and crafts statements, or builds
 * a Prisma client of its own on that port, gets refusals, counted, and none of another user's rows.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURE_AGENTS, startServer, ROOT, type TestServer } from './helpers/server';
import { FRONT_DB_CONNECTIONS, TEST_STORE } from './helpers/test-database';
import { UserClient, eventually, httpCall, metricValue, terminal } from './helpers/client';

const WALL_PROBE = `
import { createRequire } from 'node:module';
import { MessagePort } from 'node:worker_threads';
const require = createRequire(import.meta.url);

export default class WallProbe {
  static agentName = 'wall-probe';
  async execute(ctx) {
    const { mode, root, provider, victim_user, victim_thread } = ctx.input;
    if (mode === 'modules') {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const loaded = Object.keys(require.cache);
      return { drivers: loaded.filter((k) => /better[-_]sqlite3/.test(k)), forwarding: loaded.some((k) => k.endsWith('db-forwarding.js')) };
    }
    // Get hold of the run's own port, and of the statement ctx.db sends on it.
    const original = MessagePort.prototype.postMessage;
    let port = null;
    const seen = [];
    MessagePort.prototype.postMessage = function (msg, ...rest) {
      port ??= this;
      if (msg && msg.type === 'db_query') seen.push(structuredClone(msg.query));
      return original.call(this, msg, ...rest);
    };
    let own;
    try {
      ctx.emit('agent_thinking', { reasoning: 'looking around' });
      own = (await ctx.db.messages.list()).map((m) => m.content);
    } finally {
      MessagePort.prototype.postMessage = original;
    }
    const waiting = new Map();
    const onAnswer = (m) => m && m.type === 'db_answer' && waiting.get(m.id)?.(m);
    port.on('message', onAnswer);
    let nextId = 1000000;
    const ask = (kind, query, body) =>
      new Promise((resolve) => {
        const id = nextId++;
        const timer = setTimeout(() => (waiting.delete(id), resolve({ ok: false, error: { code: 'NO_ANSWER' } })), 3000);
        waiting.set(id, (m) => (clearTimeout(timer), waiting.delete(id), resolve(m)));
        original.call(port, body ?? { type: 'db_query', id, kind, query });
      });
    const learned = seen[0];
    const swap = (a) => (a === ctx.userId ? victim_user : a === ctx.threadId ? victim_thread : a);
    const limitAt = learned.argTypes.findIndex((t) => t.scalarType === 'bigint');
    const intAt = learned.argTypes.findIndex((t) => t.scalarType === 'int');
    const attempts = {
      raw_select: await ask('query', { sql: 'SELECT * FROM "Message"', args: [], argTypes: [] }),
      raw_delete: await ask('execute', { sql: 'DELETE FROM "Message"', args: [], argTypes: [] }),
      learned_sql_victim_user: await ask('query', { ...learned, args: learned.args.map(swap) }),
      learned_sql_as_execute: await ask('execute', learned),
      learned_sql_too_many_rows: await ask('query', { ...learned, args: learned.args.map((a, i) => (i === limitAt ? '100000' : a)) }),
      learned_sql_extra_arg: await ask('query', { ...learned, args: [...learned.args, victim_user], argTypes: [...learned.argTypes, learned.argTypes[0]] }),
      // NUL: PostgreSQL's text cannot hold it; refused before any database sees it, on every store.
      // Prisma's Int is 32 bits on every store: the cursor beyond it is refused, not left to the database.
      learned_sql_int_overflow: await ask('query', { ...learned, args: learned.args.map((a, i) => (i === intAt ? 2 ** 40 : a)) }),
      learned_sql_nul_arg: await ask('query', { ...learned, args: learned.args.map((a) => (a === ctx.threadId ? 'x\\u0000' : a)) }),
      // A db_query that is not one at all never leaves the cell (tests/run-port.test.ts): not tried here.
    };
    // A Prisma client of its own, built like the worker's, on the captured port.
    const { createDbChannel, createWorkerPrismaClient } = require(root + '/dist/workers/worker/db-forwarding.js');
    const channel = createDbChannel();
    channel.attach(port);
    const mine = (m) => m && m.type === 'db_answer' && m.id < 1000000 && channel.answer(m);
    port.on('message', mine);
    const prisma = createWorkerPrismaClient(provider, channel);
    const viaPrisma = async (run) => {
      try {
        return { ok: true, result: await run() };
      } catch (err) {
        return { ok: false, error: { code: err.code, message: String(err.message) } };
      }
    };
    const prismaAttempts = {
      all_messages: await viaPrisma(() => prisma.message.findMany()),
      raw_query: await viaPrisma(() => prisma.$queryRawUnsafe('SELECT * FROM "Message"')),
      victim_threads_scoped_shape: await viaPrisma(() => prisma.thread.findMany({ where: { userId: victim_user }, orderBy: { updatedAt: 'desc' }, take: 20 })),
      victim_messages_scoped_shape: await viaPrisma(() =>
        prisma.message.findMany({ where: { threadId: victim_thread, thread: { userId: victim_user }, id: { gt: 0 } }, orderBy: { id: 'asc' }, take: 50 }),
      ),
      transaction: await viaPrisma(() => prisma.$transaction(async (tx) => tx.message.findMany())),
    };
    await prisma.$disconnect();
    channel.release();
    port.off('message', mine);
    port.off('message', onAnswer);
    const after = (await ctx.db.messages.list()).map((m) => m.content);
    return { own, after, attempts, prismaAttempts };
  }
}
`;

// ctx.db's answers, as an agent sees them, for ids and cursors at the edges: the same on every store.
const DB_ALIKE = `
export default class DbAlike {
  static agentName = 'db-alike';
  async execute(ctx) {
    const out = {};
    const t = async (name, fn) => {
      try {
        out[name] = { ok: true, value: await fn() };
      } catch (err) {
        out[name] = { ok: false, code: err.code ?? null };
      }
    };
    const types = (row) => row && Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v]));
    await t('thread', async () => types(await ctx.db.threads.get(ctx.threadId)));
    await t('threads', async () => (await ctx.db.threads.list({ limit: 1000 })).map((x) => x.title));
    await t('messages', async () => (await ctx.db.messages.list()).map((m) => [m.role, m.content, m.status]));
    await t('message_types', async () => types((await ctx.db.messages.list())[0]));
    await t('after_first', async () => {
      const [first] = await ctx.db.messages.list();
      return (await ctx.db.messages.list({ afterId: first.id, limit: 1 })).map((m) => m.content);
    });
    await t('after_negative', async () => (await ctx.db.messages.list({ afterId: -5 })).length);
    await t('after_beyond_int', async () => (await ctx.db.messages.list({ afterId: 2 ** 40 })).length);
    await t('thread_nul', () => ctx.db.threads.get('a\\u0000b'));
    await t('messages_nul', () => ctx.db.messages.list({ threadId: 'a\\u0000b' }));
    await t('thread_astral', () => ctx.db.threads.get('\\u{1F600}\\uD800'));
    await t('thread_long', () => ctx.db.threads.get('x'.repeat(5000)));
    return out;
  }
}
`;

let server: TestServer;
let victim: UserClient;
let attacker: UserClient;
const scrape = async () => (await httpCall(server.url, 'GET', '/metrics')).body as string;
const refused = (text: string, reason: string) => metricValue(text, 'atoll_db_queries_refused_total', { reason });

beforeAll(async () => {
  const agentsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-db-wall-'));
  fs.writeFileSync(path.join(agentsDir, 'wall-probe.mjs'), WALL_PROBE);
  fs.writeFileSync(path.join(agentsDir, 'db-alike.mjs'), DB_ALIKE);
  fs.copyFileSync(path.join(FIXTURE_AGENTS, 'db-probe.mjs'), path.join(agentsDir, 'db-probe.mjs'));
  // THREAD_LOCKDOWN=0: the attacker here patches MessagePort.prototype to get its run's port, which lockdown
  // refuses (tests/worker-reset.test.ts). The gate must hold even for code that got the port some other way.
  server = await startServer({ AGENTS_DIR: agentsDir, WORKER_DB_WARMUP: 'eager', CELLS: '2', THREADS_PER_CELL: '2', THREAD_LOCKDOWN: '0' });
  [victim, attacker] = await Promise.all([UserClient.connect(server.url, 'wall-victim'), UserClient.connect(server.url, 'wall-attacker')]);
});
afterAll(async () => {
  victim?.close();
  attacker?.close();
  await server?.stop();
});

test('eager warm-up loads each thread\'s Prisma client before its first run, and sends nothing to the gate', async () => {
  // Runs that never touch ctx.db: with WORKER_DB_WARMUP=eager their workers report their client loaded anyway.
  const runs = await Promise.all([0, 1, 2, 3].map((i) => attacker.start({ agent: 'wall-probe', input: { text: `warm ${i}`, mode: 'modules' } })));
  for (const r of runs) expect(terminal(await attacker.waitForRun(r.run_id)).payload.status).toBe('completed');
  const reports = await Promise.all(runs.map((r) => attacker.http('GET', `/v1/runs/${r.run_id}`)));
  const workers = new Set(reports.map((r) => `${r.body.ran_on.cell}/${r.body.ran_on.worker}`));
  expect(workers.size).toBeGreaterThan(1);
  expect(await eventually(async () => metricValue(await scrape(), 'atoll_db_connections') - FRONT_DB_CONNECTIONS >= workers.size, 5000)).toBe(true);
  const text = await scrape();
  expect(metricValue(text, 'atoll_db_connections', { process: 'front' })).toBe(FRONT_DB_CONNECTIONS);
  // The warm-up query is compiled and then refused inside the worker (no run): the gate never saw it.
  for (const reason of ['invalid_message', 'run_not_running', 'statement_not_allowed', 'invalid_args', 'user_mismatch']) expect([reason, refused(text, reason)]).toEqual([reason, 0]);
});

test('a worker thread never loads a database driver', async () => {
  const { run_id } = await attacker.start({ agent: 'wall-probe', input: { text: 'modules', mode: 'modules' } });
  const t = terminal(await attacker.waitForRun(run_id));
  expect(t.payload.status).toBe('completed');
  expect(t.payload.final_response).toEqual({ drivers: [], forwarding: true });
});

test('crafted statements on the run\'s port are refused and counted; ctx.db keeps working for the run\'s own user', async () => {
  const secret = 'victim secret 4242';
  const own = await victim.start({ agent: 'echo', input: secret });
  await victim.waitForRun(own.run_id);
  const before = await scrape();

  const probe = await attacker.start({ agent: 'wall-probe', input: { text: 'attacker note', root: ROOT, provider: TEST_STORE === 'sqlite' ? 'sqlite' : 'postgres', victim_user: 'wall-victim', victim_thread: own.thread_id } });
  const t = terminal(await attacker.waitForRun(probe.run_id));
  expect(t.payload.status).toBe('completed');
  const out = t.payload.final_response;
  expect(JSON.stringify(out)).not.toContain(secret);
  expect(out.own).toEqual(['attacker note']);
  expect(out.after).toEqual(['attacker note']);
  for (const [name, answer] of Object.entries<any>({ ...out.attempts, ...out.prismaAttempts })) {
    expect([name, answer.ok]).toEqual([name, false]);
  }
  for (const [name, answer] of Object.entries<any>(out.attempts)) expect([name, answer.error.code]).toEqual([name, 'DB_QUERY_REFUSED']);
  for (const name of ['all_messages', 'raw_query', 'victim_threads_scoped_shape', 'victim_messages_scoped_shape']) {
    expect([name, out.prismaAttempts[name].error.code]).toEqual([name, 'DB_QUERY_REFUSED']);
  }
  expect(out.prismaAttempts.transaction.error.message).toMatch(/no transactions/);
  expect(out.attempts.raw_select.error.message).toMatch(/statement_not_allowed/);
  expect(out.attempts.learned_sql_victim_user.error.message).toMatch(/user_mismatch/);
  expect(out.attempts.learned_sql_too_many_rows.error.message).toMatch(/invalid_args/);
  expect(out.attempts.learned_sql_nul_arg.error.message).toMatch(/invalid_args/);
  expect(out.attempts.learned_sql_int_overflow.error.message).toMatch(/invalid_args/);

  const after = await scrape();
  const delta = (reason: string) => refused(after, reason) - refused(before, reason);
  // raw_select, raw_delete, learned_sql_as_execute, all_messages, raw_query
  expect(delta('statement_not_allowed')).toBeGreaterThanOrEqual(5);
  // learned_sql_victim_user, victim_threads_scoped_shape, victim_messages_scoped_shape
  expect(delta('user_mismatch')).toBeGreaterThanOrEqual(3);
  expect(delta('invalid_args')).toBeGreaterThanOrEqual(4);

  // Each refusal is logged naming the run, never the statement's values; once per run and reason (the metric counts
  // every one), so a run repeating a refused statement does not write the front's log at its own pace.
  const lines = server.logs.filter((l) => l.msg === 'thread db query refused');
  const reasons = lines.filter((l) => l.run_id === probe.run_id).map((l) => l.reason as string);
  expect(new Set(reasons).size).toBe(reasons.length);
  expect([...reasons].sort()).toEqual(expect.arrayContaining(['invalid_args', 'statement_not_allowed', 'user_mismatch']));
  const text = JSON.stringify(lines);
  expect(text).not.toContain('wall-victim');
  expect(text).not.toContain(own.thread_id);

  // And the victim's own ctx.db still sees its data.
  const self = await victim.start({ agent: 'db-probe', input: { text: 'me again', target_thread: own.thread_id } });
  expect(terminal(await victim.waitForRun(self.run_id)).payload.final_response).toMatchObject({ found: true, messages: 2 });
});

test('ctx.db answers alike on every store: row shapes, cursors, and ids no thread has (NUL, astral, too long)', async () => {
  const u = await UserClient.connect(server.url, 'wall-alike');
  try {
    const first = await u.start({ agent: 'echo', input: 'first note' });
    await u.waitForRun(first.run_id);
    const run = await u.start({ agent: 'db-alike', input: 'second note', thread_id: first.thread_id });
    const out = terminal(await u.waitForRun(run.run_id)).payload.final_response;
    expect(out).toEqual({
      thread: { ok: true, value: { id: 'string', title: 'string', createdAt: 'string', updatedAt: 'string' } },
      threads: { ok: true, value: ['first note'] },
      messages: { ok: true, value: [['user', 'first note', 'complete'], ['assistant', 'first note', 'complete'], ['user', 'second note', 'complete']] },
      message_types: { ok: true, value: { id: 'number', role: 'string', content: 'string', status: 'string', createdAt: 'string' } },
      after_first: { ok: true, value: ['first note'] },
      after_negative: { ok: true, value: 3 },
      // Prisma's Int is 32 bits on both: the cursor is refused before any database sees it.
      after_beyond_int: { ok: false, code: 'DB_QUERY_REFUSED' },
      thread_nul: { ok: true, value: null },
      messages_nul: { ok: true, value: [] },
      thread_astral: { ok: true, value: null },
      thread_long: { ok: false, code: 'DB_QUERY_REFUSED' },
    });
  } finally {
    u.close();
  }
});

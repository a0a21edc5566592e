/**
 * The gate's start-up learning, for each database's generated client (in a plain node process: Prisma's
 * WebAssembly compiler fails inside jest's sandbox; no database is needed), and the worker adapter's refusals
 * without a run.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { ROOT } from './helpers/server';
import { createDbChannel } from '../workers/worker/db-forwarding';

const PROVIDERS = [
  // provider, its prisma-client module, how a user id comparison reads in its SQL
  ['sqlite', 'sqlite', /`userId` = \?/],
  ['postgres', 'postgresql', /"userId" = \$\d/],
] as const;

describe.each(PROVIDERS)('%s', (provider, folder, userIdSql) => {
  /** Runs learnStatements(the provider's client, exercise) in a node process; returns the statements or the error message. */
  function learn(exercise: string | null): { statements?: { kind: string; sql: string; userArgs: number[]; argTypes: { scalarType: string }[] }[]; error?: string } {
    const gate = JSON.stringify(path.join(ROOT, 'dist/server/store/worker-query-gate.js'));
    const client = JSON.stringify(path.join(ROOT, `dist/server/store/${folder}/prisma-client.js`));
    const database = `{ provider: '${provider}', prismaClient: require(${client}).prismaClientOver }`;
    const code = `require(${gate}).learnStatements(${database}, ${exercise ?? 'undefined'}).then((statements) => console.log(JSON.stringify({ statements })), (err) => console.log(JSON.stringify({ error: err.message })))`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  }

  test('the gate learns each scoped statement with the positions of the user id', () => {
    const learned = learn(null).statements!;
    expect(learned).toHaveLength(3);
    for (const s of learned) {
      expect(s.kind).toBe('query');
      expect(s.userArgs.length).toBeGreaterThan(0);
      // Only argument types the gate knows how to bound (worker-query-gate.ts, argFits): anything else would be refused.
      for (const t of s.argTypes) expect(['string', 'int', 'bigint']).toContain(t.scalarType);
    }
    expect(learned.map((s) => s.sql).join('\n')).toMatch(userIdSql);
  });

  test('the front refuses to start when a scoped query is not pinned to its user or inlines a value', () => {
    expect(learn('(prisma) => prisma.message.findMany({ take: 5 })').error).toMatch(/not pinned to a user/);
    expect(learn('(prisma, userId) => prisma.$queryRawUnsafe(`SELECT * FROM "Thread" WHERE "userId" = \'${userId}\'`)').error).toMatch(/inlines a value/);
  });
});

test('the thread adapter refuses with no run, after release (pending statements too), and sends over the run\'s port', async () => {
  const channel = createDbChannel();
  const query = { sql: 'SELECT 1', args: [], argTypes: [] };
  await expect(channel.send('query', query)).rejects.toMatchObject({ code: 'DB_NO_RUN' });
  const { port1, port2 } = new MessageChannel();
  const sent: unknown[] = [];
  port1.on('message', (m) => sent.push(m));
  channel.attach(port2);
  const pending = channel.send('query', query);
  channel.release();
  await expect(pending).rejects.toMatchObject({ code: 'DB_RUN_RELEASED' });
  await expect(channel.send('query', query)).rejects.toMatchObject({ code: 'DB_RUN_RELEASED' });
  // The port delivers on a later turn: wait for the first message (a state; a starved machine is slow), then a
  // little more, in which a wrongly sent second one would arrive too.
  for (const deadline = Date.now() + 10_000; sent.length === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  expect(sent).toEqual([{ type: 'db_query', id: 1, kind: 'query', query }]);
  port1.close();
});

/**
 * What is sent again when PostgreSQL rolls a transaction back (server/store/postgresql/rolled-back.ts): only the
 * server's own answers that it rolled back for the moment (a deadlock, a serialization failure), a bounded number
 * of times. Any other failure, one raised on this side above all, is the caller's at once. The real deadlocks
 * are in tests/front-pipeline.test.ts (a group commit) and tests/postgresql/shared-queue.test.ts (an accept).
 */
import { isRolledBack, retryRolledBack } from '../../server/store/postgresql/rolled-back';

/** An error as pg builds it from the server's answer: a SQLSTATE and a severity. */
const answered = (code: string) => Object.assign(new Error(`server said ${code}`), { code, severity: 'ERROR' });

test('a deadlock or a serialization failure answered by the server is a rollback to retry; nothing else is', () => {
  expect(isRolledBack(answered('40P01'))).toBe(true);
  expect(isRolledBack(answered('40001'))).toBe(true);
  // 40003: the statement's completion is unknown, not a rollback; 23505 and 57014 are answers that stand.
  for (const code of ['40003', '23505', '57014']) expect(isRolledBack(answered(code))).toBe(false);
  // The same code without the server's severity was raised on this side: it says nothing about what committed.
  expect(isRolledBack(Object.assign(new Error('x'), { code: '40P01' }))).toBe(false);
  expect(isRolledBack(new TypeError('40P01'))).toBe(false);
});

test('sent again while rolled back, and answered by the first attempt that is not', async () => {
  let calls = 0;
  const answer = await retryRolledBack(async () => {
    calls++;
    if (calls < 3) throw answered('40P01');
    return 'committed';
  });
  expect([answer, calls]).toEqual(['committed', 3]);
});

test('five attempts in all, then the rollback is the caller\'s', async () => {
  let calls = 0;
  await expect(
    retryRolledBack(async () => {
      calls++;
      throw answered('40001');
    }),
  ).rejects.toMatchObject({ code: '40001' });
  expect(calls).toBe(5);
});

test('any other failure is thrown at once, unretried', async () => {
  for (const failure of [answered('23505'), new TypeError('a bug of ours')]) {
    let calls = 0;
    await expect(
      retryRolledBack(async () => {
        calls++;
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(calls).toBe(1);
  }
});

test('the rollback is found inside what the attempt throws (a TransactionFailed wraps it)', async () => {
  let calls = 0;
  const wrapped = (cause: unknown) => Object.assign(new Error('transaction failed'), { wrapped: cause });
  await expect(
    retryRolledBack(
      async () => {
        calls++;
        if (calls === 1) throw wrapped(answered('40P01'));
        return 'ok';
      },
      (err) => (err as { wrapped?: unknown }).wrapped,
    ),
  ).resolves.toBe('ok');
  expect(calls).toBe(2);
});

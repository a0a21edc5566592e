/**
 * The byte bucket behind RUN_LOG_BYTES_PER_S (protocol/byte-bucket.ts): a burst of `capacity`, then `bytesPerSecond`,
 * and no more than the burst after any pause (README: "a 16 s burst, then that rate"). On a clock of its own.
 */
import { createByteBucket } from '../../protocol/byte-bucket';

function clocked(rate: number, capacity: number) {
  let t = 1_000_000;
  const bucket = createByteBucket(rate, capacity, () => t);
  return { bucket, wait: (ms: number) => (t += ms) };
}

test('the burst goes at once, and not a byte more', () => {
  const { bucket } = clocked(100, 1000);
  expect(bucket.take(600)).toBe(true);
  expect(bucket.take(400)).toBe(true);
  expect(bucket.take(1)).toBe(false);
});

test('a take that does not fit spends nothing', () => {
  const { bucket } = clocked(100, 1000);
  expect(bucket.take(1001)).toBe(false);
  expect(bucket.take(1000)).toBe(true);
});

test('then it refills at its rate', () => {
  const { bucket, wait } = clocked(100, 1000);
  expect(bucket.take(1000)).toBe(true);
  wait(500);
  expect(bucket.take(51)).toBe(false);
  expect(bucket.take(50)).toBe(true);
  expect(bucket.take(1)).toBe(false);
  wait(1000);
  expect(bucket.take(100)).toBe(true);
  expect(bucket.take(1)).toBe(false);
});

test('a pause saves up no more than the burst', () => {
  const { bucket, wait } = clocked(100, 1000);
  expect(bucket.take(1000)).toBe(true);
  wait(60_000);
  expect(bucket.take(1001)).toBe(false);
  expect(bucket.take(1000)).toBe(true);
  expect(bucket.take(1)).toBe(false);
});

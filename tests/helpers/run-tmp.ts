/**
 * The jest run's own temporary folder (global-setup makes it and points TMPDIR at it; global-teardown removes it).
 */
import fs from 'node:fs';
import path from 'node:path';

export const RUN_TMP_ENV = 'ATOLL_TEST_RUN_TMP';
export const RUN_TMP_PREFIX = 'atoll-tests-';

/** Removes the run's folder; returns how many entries the tests had left in it. */
export function removeRunTmp(env: NodeJS.ProcessEnv = process.env): number {
  const dir = env[RUN_TMP_ENV];
  // Only a folder global-setup named: never whatever TMPDIR happens to be.
  if (!dir || !path.basename(dir).startsWith(RUN_TMP_PREFIX)) return 0;
  let left = 0;
  try {
    left = fs.readdirSync(dir).length;
  } catch {
    return 0;
  }
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch (err) {
    // A process still writing there, say: tidiness must not fail a green run, nor skip the rest of the teardown.
    console.warn(`could not remove the test run's temporary folder ${dir}: ${(err as Error).message}`);
  }
  return left;
}

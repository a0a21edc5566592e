/**
 * A worker thread's log lines survive its termination (server/logger.ts, with the writer worker-main.ts is handed
 * by workers/worker/fd-guards.ts): the cell
 * terminates a thread right after its `done` (a recycle, a timeout), and the lines it wrote just before (why it is
 * recycled) must reach the log.
 * A child process so that its stdout is a real pipe, as a cell's is.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runToExit } from '../helpers/run-to-exit';

const LOGGER = path.join(__dirname, '../../server/logger.js');
const FD_GUARDS = path.join(__dirname, '../../workers/worker/fd-guards.js');

test('lines a thread logged just before it was terminated are all written', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-test-'));
  try {
    const script = path.join(dir, 'thread-logs.js');
    fs.writeFileSync(
      script,
      `const { Worker, isMainThread, parentPort } = require('node:worker_threads');
      if (isMainThread) {
        // Terminated as the cell does it: at once, on the thread's last message.
        for (let i = 0; i < 5; i++) {
          const w = new Worker(__filename);
          w.on('message', () => void w.terminate());
        }
      } else {
        // As workers/worker/run-entry.ts and worker-main.ts make it: behind the descriptor wall, with the writer it keeps.
        const writeLog = require(${JSON.stringify(FD_GUARDS)}).guardDescriptors(() => undefined).writeLog;
        const log = require(${JSON.stringify(LOGGER)}).createLogger('info', { worker: 1 }, { write: writeLog });
        for (let i = 0; i < 20; i++) log.info({ i }, 'line');
        log.warn({}, 'last');
        parentPort.postMessage('done');
      }`,
    );
    const out = await runToExit(script, [], { cwd: dir, env: { PATH: process.env.PATH ?? '' }, timeoutMs: 30_000 });
    expect(out.code).toBe(0);
    const lines = out.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
    expect(lines.filter((l) => l.msg === 'last')).toHaveLength(5);
    expect(lines).toHaveLength(5 * 21);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

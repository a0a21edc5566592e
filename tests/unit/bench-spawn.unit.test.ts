/** The bench's server spawner: a start that times out kills what it started and removes its directory. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from '../../scripts/bench/spawn';

test('a server that never says listening is killed when its start times out', async () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-spawn-test-'));
  const entry = path.join(scratch, 'silent.mjs');
  const pidFile = path.join(scratch, 'pid');
  fs.writeFileSync(entry, `import fs from 'node:fs'; fs.writeFileSync(process.env.PID_FILE, String(process.pid) + ' ' + process.cwd()); setInterval(() => {}, 1000);`);
  try {
    await expect(startServer(entry, { PID_FILE: pidFile }, [], { startTimeoutMs: 1500 })).rejects.toThrow(/did not start in 1500 ms/);
    const [pid, cwd] = fs.readFileSync(pidFile, 'utf8').split(' ');
    expect(Number(pid)).toBeGreaterThan(0);
    expect(() => process.kill(Number(pid), 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    expect(fs.existsSync(cwd)).toBe(false);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
});

/**
 * Quarantine cells start when the scheduler needs one (at every pump, 4 times a second). One that dies before it is
 * ready (an agent module whose top-level code kills the cell, as only a quarantine cell's folder name can tell) was
 * started again at every pump; it now waits out the serving cells' backoff (200 ms, doubling, at most 5 s).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../server/config';
import { cellConfigOf, supervisorSettingsOf } from '../../server/config-views';
import { createLogger } from '../../server/logger';
import { createCellSupervisor } from '../../server/cells/supervisor';

const until = async (cond: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
};

test("a quarantine cell that dies before it is ready is not started again before its backoff", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-quarantine-backoff-'));
  // A cell that dies as it starts, before it says anything.
  const entry = path.join(dir, 'dies.js');
  fs.writeFileSync(entry, 'process.exit(7);\n');
  const lines: { msg: string; cell?: string }[] = [];
  const config = loadConfig({ CELLS: '1', QUARANTINE_CELLS: '1', CELL_SANDBOX: 'off', CELL_UID_BASE: '0' }, dir);
  const supervisor = createCellSupervisor({
    settings: supervisorSettingsOf(config),
    cellConfig: cellConfigOf(config, 'sqlite', []),
    sandbox: { mode: 'off', root: path.resolve(__dirname, '../../..'), agentsDir: null, scratchRoot: path.join(dir, 'scratch'), uidBase: 0 },
    cellEntry: entry,
    log: createLogger('info', {}, { write: (line) => void lines.push(JSON.parse(line) as { msg: string; cell?: string }) }),
  });
  const starts = () => lines.filter((l) => l.msg === 'cell starting' && l.cell?.startsWith('quarantine')).length;
  // Its slot is free once its death was judged.
  const slots = () => supervisor.cells().filter((c) => c.quarantine).length;
  try {
    for (const pick of [() => supervisor.pickKillerCell(), () => supervisor.pickQuarantine(1)]) {
      const before = starts();
      expect(pick()).toBeNull();
      await until(() => slots() === 0);
      // The pump asks again right after the death: nothing starts until the backoff (200 ms) is over.
      for (let i = 0; i < 5; i++) expect(pick()).toBeNull();
      expect(starts() - before).toBe(1);
      await new Promise((r) => setTimeout(r, 250));
      expect(pick()).toBeNull();
      expect(starts() - before).toBe(2);
      await until(() => slots() === 0);
    }
  } finally {
    await supervisor.stop(1000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

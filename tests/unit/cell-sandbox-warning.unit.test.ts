/**
 * When cells can run as OS users of their own (the front as root): Atoll's code and AGENTS_DIR must be readable by
 * others, the folders above them only passable. A passable, unlistable parent (0711: the tests' temporary folder, a
 * home directory) was refused until 2026-12-06, and every root test with its agents in a temporary folder ran its cells
 * as the front's own user without saying so.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cellSandboxWarning, separateUsers } from '../../server/cells/cell-sandbox';

const root = path.resolve(__dirname, '../../..');
const asRoot = separateUsers(61_000);

(asRoot ? test : test.skip)('a passable parent is enough; an unreadable AGENTS_DIR or an unpassable parent is named', () => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-sandbox-warning-'));
  try {
    const agents = path.join(parent, 'agents');
    fs.mkdirSync(agents, { mode: 0o755 });
    fs.chmodSync(agents, 0o755);
    fs.chmodSync(parent, 0o711);
    expect(cellSandboxWarning({ root, agentsDir: agents, uidBase: 61_000 })).toBeNull();
    fs.chmodSync(agents, 0o700);
    expect(cellSandboxWarning({ root, agentsDir: agents, uidBase: 61_000 })).toContain(`${agents} is not readable by other users (mode 700)`);
    fs.chmodSync(agents, 0o755);
    fs.chmodSync(parent, 0o700);
    expect(cellSandboxWarning({ root, agentsDir: agents, uidBase: 61_000 })).toContain(`${parent} is not searchable by other users (mode 700)`);
    // Cells as the front's own user: nothing to check.
    expect(cellSandboxWarning({ root, agentsDir: agents, uidBase: 0 })).toBeNull();
  } finally {
    fs.rmSync(parent, { recursive: true, force: true });
  }
});

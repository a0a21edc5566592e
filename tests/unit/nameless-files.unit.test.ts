import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readNamelessFiles } from '../../server/cells/nameless-files';

const MiB = 1024 * 1024;
const O_TMPFILE = 0o20000000 | 0o200000;

test("files with no name held open under a cell's folder are found by the folder they were in; named ones are not", () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-nameless-'));
  const cellDir = path.join(base, 'cell1');
  const fds: number[] = [];
  const fill = (fd: number, mb: number) => fs.writeSync(fd, Buffer.alloc(mb * MiB, 1));
  try {
    for (const d of ['run-a', 'run-b', 'named'].map((n) => path.join(cellDir, n)).concat(path.join(`${cellDir}.trash`, '0'), path.join(base, 'other'))) fs.mkdirSync(d, { recursive: true });
    const unlinked = (file: string, mb: number) => {
      const fd = fs.openSync(file, 'w');
      fs.unlinkSync(file);
      fill(fd, mb);
      fds.push(fd);
    };
    unlinked(path.join(cellDir, 'run-a', 'x'), 2);
    unlinked(path.join(cellDir, 'run-a', 'y'), 1);
    const nameless = fs.openSync(path.join(cellDir, 'run-b'), O_TMPFILE | fs.constants.O_RDWR);
    fill(nameless, 3);
    fds.push(nameless);
    // A real name that ends like a deleted one's link, still linked: not nameless.
    const named = fs.openSync(path.join(cellDir, 'named', 'z (deleted)'), 'w');
    fill(named, 1);
    fds.push(named);
    unlinked(path.join(`${cellDir}.trash`, '0', 't'), 1);
    unlinked(path.join(base, 'other', 'o'), 1);
    const held = readNamelessFiles(process.pid, cellDir)!;
    expect([...held.keys()].sort()).toEqual(['', 'run-a', 'run-b']);
    expect(held.get('run-a')).toBeGreaterThanOrEqual(3 * MiB);
    expect(held.get('run-b')).toBeGreaterThanOrEqual(3 * MiB);
    // Wherever its folder went since (the trash, then removed): a cell made it in its folder, and it holds disk.
    expect(held.get('')).toBeGreaterThanOrEqual(2 * MiB);
    for (const fd of fds.splice(0)) fs.closeSync(fd);
    // Closed, they are gone (the test's own process may hold a nameless file of its own: Node 24's jest did).
    const after = readNamelessFiles(process.pid, cellDir)!;
    expect([after.has('run-a'), after.has('run-b')]).toEqual([false, false]);
    expect(held.get('')! - (after.get('') ?? 0)).toBeGreaterThanOrEqual(2 * MiB);
    expect(readNamelessFiles(2 ** 22 + 12345, cellDir)).toBeNull();
  } finally {
    for (const fd of fds) fs.closeSync(fd);
    fs.rmSync(base, { recursive: true, force: true });
  }
});

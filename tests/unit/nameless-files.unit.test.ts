import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createNamelessFilesWatch, readNamelessFiles, startDescriptorRead, stepDescriptorRead } from '../../server/cells/nameless-files';

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

test('a cell holding thousands of descriptors is read a step at a time, and the read still finds its nameless file', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-nameless-'));
  const cellDir = path.join(base, 'cell1');
  const fds: number[] = [];
  try {
    fs.mkdirSync(path.join(cellDir, 'run-a'), { recursive: true });
    // As sockets would: descriptors RUN_OPEN_FILES does not bound, each a link to read.
    for (let i = 0; i < 3000; i++) fds.push(fs.openSync('/dev/null', 'r'));
    const file = path.join(cellDir, 'run-a', 'x');
    const fd = fs.openSync(file, 'w');
    fs.unlinkSync(file);
    fs.writeSync(fd, Buffer.alloc(2 * MiB, 1));
    fds.push(fd);
    // A step whose time is spent already reads 64 descriptors, then stops: no step reads them all at once.
    const read = startDescriptorRead(process.pid, cellDir)!;
    expect(read.fds.length).toBeGreaterThan(3000);
    expect(stepDescriptorRead(read, 0)).toBeNull();
    expect(read.at).toBe(64);
    let steps = 1;
    let held: Map<string, number> | null = null;
    while (!(held = stepDescriptorRead(read, 0))) steps++;
    expect(steps).toBe(Math.ceil(read.fds.length / 64) - 1);
    expect(held.get('run-a')).toBeGreaterThanOrEqual(2 * MiB);

    // The watch goes on with a read at each tick, and tells the cell once the read is complete.
    const sent: [string, number][][] = [];
    const watch = createNamelessFilesWatch({
      cells: () => [{ pid: process.pid, scratchDir: cellDir, busy: true, send: (m) => sent.push(m.byFolder), maxDescriptors: null, overDescriptors: () => undefined }],
      intervalMs: 5,
      stepBudgetMs: 0,
    });
    watch.start();
    try {
      const end = Date.now() + 20_000;
      while (sent.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    } finally {
      watch.stop();
    }
    expect(sent[0].find(([name]) => name === 'run-a')?.[1]).toBeGreaterThanOrEqual(2 * MiB);
  } finally {
    for (const fd of fds) fs.closeSync(fd);
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test("a cell holding more descriptors than its ceiling is reported at the read's start, with or without nameless files read", async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-ceiling-'));
  const fds: number[] = [];
  try {
    for (let i = 0; i < 200; i++) fds.push(fs.openSync(path.join(base, 'f'), 'w'));
    // One of them nameless (unlinked while open), with disk of its own: a read of nameless files reports it.
    fs.writeSync(fds[0], Buffer.alloc(64 * 1024, 1));
    fs.unlinkSync(path.join(base, 'f'));
    const held = fs.readdirSync('/proc/self/fd').length;
    const watched = async (maxDescriptors: number | null, readNameless: boolean) => {
      const over: number[] = [];
      const sent: unknown[] = [];
      let reads = 0;
      const watch = createNamelessFilesWatch({
        cells: () => {
          reads++;
          return [{ pid: process.pid, scratchDir: base, busy: true, send: (m) => sent.push(m), maxDescriptors, overDescriptors: (n) => over.push(n) }];
        },
        intervalMs: 5,
        readNameless,
      });
      watch.start();
      try {
        // Until something is reported, or 20 ticks went by without (a read of ~250 descriptors takes one).
        const end = Date.now() + 20_000;
        while (over.length === 0 && sent.length === 0 && reads < 20 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      } finally {
        watch.stop();
      }
      return { over: over.length > 0, overAtLeast: over.every((n) => n >= held - 5), sent: sent.length > 0 };
    };
    expect(await watched(100, false)).toEqual({ over: true, overAtLeast: true, sent: false });
    expect(await watched(100, true)).toEqual({ over: true, overAtLeast: true, sent: false });
    // Under the ceiling, or with none: nothing is reported, and the nameless file is when asked.
    expect(await watched(held + 1000, false)).toEqual({ over: false, overAtLeast: true, sent: false });
    expect(await watched(null, true)).toEqual({ over: false, overAtLeast: true, sent: true });
  } finally {
    for (const fd of fds) fs.closeSync(fd);
    fs.rmSync(base, { recursive: true, force: true });
  }
});

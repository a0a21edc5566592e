/** Cell process entry (forked by the front's supervisor): wires IPC to the cell runtime. */
import type { CellToFront, FrontToCell } from '../../server/protocol/cell-messages.js';
import { createCellRuntime } from './cell-runtime.js';

if (!process.send) throw new Error('workers/cell/main must be forked with an IPC channel');

const runtime = createCellRuntime({
  send: (msg: CellToFront) => {
    if (process.connected) process.send!(msg);
  },
  exit: (code) => process.exit(code),
  log: (obj, msg) => process.stderr.write(JSON.stringify({ level: 40, msg, ...obj, cell_pid: process.pid }) + '\n'),
});
process.on('message', (msg: FrontToCell) => void runtime.handle(msg));
// If the front goes away, so does the cell: no orphans.
process.on('disconnect', () => process.exit(0));

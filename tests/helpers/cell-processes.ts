/** The cells of a front, found the way an operator would: its child processes running the cell entry. */
import fs from 'node:fs';

/** The pids of `frontPid`'s live cells (Linux: read from /proc). */
export function cellPids(frontPid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return ppid === frontPid && fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('workers/cell/main.js');
      } catch {
        return false;
      }
    })
    .map(Number);
}

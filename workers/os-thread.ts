/** A thread's identity and priority in the OS (Linux), for the cell's CPU governor (workers/cell/cpu-governor.ts). */
import fs from 'node:fs';

/** The calling thread's id in the OS (Linux TID). */
export function osThreadId(): number | null {
  try {
    // /proc/thread-self links to /proc/<pid>/task/<tid> of the calling thread.
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : null;
  } catch {
    return null;
  }
}

/** CAP_SYS_NICE in this process's effective capabilities (/proc/self/status CapEff, bit 23). */
export function canRaisePriority(): boolean {
  try {
    const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:'));
    return line ? (BigInt(`0x${line.slice('CapEff:'.length).trim()}`) & (1n << 23n)) !== 0n : false;
  } catch {
    return false;
  }
}

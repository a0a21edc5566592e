/** This worker thread's id in the OS (Linux TID), so its cell can read its CPU time and set its priority. */
import fs from 'node:fs';

export function osThreadId(): number | null {
  try {
    // /proc/thread-self links to /proc/<pid>/task/<tid> of the calling thread.
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : null;
  } catch {
    return null;
  }
}

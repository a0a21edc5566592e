/** Live progress on stderr: one rewritten line on a terminal, a line every few seconds otherwise. */
import { performance } from 'node:perf_hooks';
import type { Counters } from './virtual-user.js';

export function startProgress(label: string, counters: Counters, totalRuns: number | null, stream: NodeJS.WriteStream, mode: 'auto' | 'off') {
  if (mode === 'off') return { stop() {} };
  const tty = stream.isTTY === true;
  const t0 = performance.now();
  let lastEvents = 0;
  let lastT = t0;
  const line = () => {
    const now = performance.now();
    const rate = ((counters.events - lastEvents) * 1000) / Math.max(1, now - lastT);
    lastEvents = counters.events;
    lastT = now;
    const inFlight = counters.accepted - counters.finished;
    const of = totalRuns === null ? '' : `/${totalRuns}`;
    return `[${label}] ${((now - t0) / 1000).toFixed(1)}s sent ${counters.sent}${of} accepted ${counters.accepted} done ${counters.finished} (ok ${counters.completed}, not ok ${counters.finished - counters.completed}) refused ${counters.refused} ack-errors ${counters.ackErrors} in-flight ${inFlight} events ${counters.events} (${rate.toFixed(0)}/s)`;
  };
  const timer = setInterval(() => stream.write(tty ? `\r\x1b[2K${line()}` : `${line()}\n`), tty ? 250 : 5000);
  return {
    stop() {
      clearInterval(timer);
      stream.write(tty ? `\r\x1b[2K${line()}\n` : `${line()}\n`);
    },
  };
}

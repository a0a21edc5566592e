/**
 * A worker's log line, written whole only up to PIPE_BUF: the thread writes fd 1, the front's pipe (the cell's
 * stdout is inherited), and a write to a pipe is atomic only up to 4 KiB on Linux. A longer line (an agent's
 * `ctx.log` with large fields, an error message an agent chose) could have a line of the front's land inside it,
 * and neither would parse. So a longer line is made to fit: its largest members beyond the line's own ids are
 * replaced by what they were (`"[cut: N bytes]"`), then its message is shortened, and it says `"cut": true`.
 */
export const MAX_LOG_LINE_BYTES = 4096;

/** What identifies the line: never cut (the message only shortened, last). */
const KEPT = new Set(['level', 'time', 'pid', 'cell', 'worker', 'run_id', 'user_id', 'agent', 'from', 'msg']);

const bytes = (s: string) => Buffer.byteLength(s);

export function fitLogLine(line: string, max = MAX_LOG_LINE_BYTES): string {
  if (bytes(line) <= max) return line;
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return `${JSON.stringify({ level: 50, msg: 'a log line that did not parse, cut', bytes: bytes(line) })}\n`;
  }
  entry.cut = true;
  const render = () => `${JSON.stringify(entry)}\n`;
  const cuttable = Object.keys(entry)
    .filter((k) => !KEPT.has(k) && k !== 'cut')
    .map((k) => ({ k, size: bytes(JSON.stringify(entry[k]) ?? '') }))
    .sort((a, b) => b.size - a.size);
  for (const { k, size } of cuttable) {
    if (bytes(render()) <= max) return render();
    entry[k] = `[cut: ${size} bytes]`;
  }
  if (bytes(render()) <= max) return render();
  // The message last: the longest prefix that fits (what JSON escapes counts six bytes a character at most).
  const msg = typeof entry.msg === 'string' ? entry.msg : '';
  let lo = 0;
  let hi = msg.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    entry.msg = `${msg.slice(0, mid)}…`;
    if (bytes(render()) <= max) lo = mid;
    else hi = mid - 1;
  }
  entry.msg = `${msg.slice(0, lo)}…`;
  const fitted = render();
  // Ids alone past the limit cannot happen with Atoll's own ids; if it did, a short line says so rather than split.
  return bytes(fitted) <= max ? fitted : `${JSON.stringify({ level: 50, msg: 'a log line too long to fit, cut', bytes: bytes(line) })}\n`;
}

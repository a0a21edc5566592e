/**
 * Node's own messages from a worker thread to the cell (what it prints, its start, its uncaught error) come on a port
 * agent code holds: process.stdout's `kPort` symbol in the worker. The cell's main thread took them as Node sends
 * them, and a message Node never sends threw there, or in an 'error' event of the worker's stdout nobody listens to:
 * a chunk that is neither text nor bytes (written through the worker's own stdout once its `objectMode` is set), a
 * string chunk in an encoding Buffer does not know (`process.stdout.write('x', 'buffer')`), a stream or a message type
 * Node never sends, an error of bytes Node never wrote. The cell exited, and every other run in it ran again
 * (tests/worker-stdio-forgery.test.ts). Here such a message is dropped before Node reads it, and its worker is
 * terminated: its own run fails, as a crash.
 */
import { Worker } from 'node:worker_threads';

/** What a message of Node's worker protocol must be for the parent's handler to take it without throwing. */
function forgery(message: unknown, worker: Worker): string | null {
  if (typeof message !== 'object' || message === null) return 'not an object';
  const m = message as { type?: unknown; stream?: unknown; chunks?: unknown };
  if (m.type !== 'stdioPayload') return null; // the others throw at once, if they do (below)
  // What a worker prints: only stdout and stderr come this way (stdin goes the other way).
  if (m.stream !== 'stdout' && m.stream !== 'stderr') return 'a stream Node never sends';
  if (!Array.isArray(m.chunks)) return 'chunks that are not a list';
  for (const c of m.chunks as unknown[]) {
    if (typeof c !== 'object' || c === null) return 'a chunk that is not an object';
    const { chunk, encoding } = c as { chunk?: unknown; encoding?: unknown };
    // The Readable errors (asynchronously: an 'error' event) on anything else, and ends on null.
    if (typeof chunk === 'string') {
      if (encoding !== undefined && encoding !== null && encoding !== '' && !(typeof encoding === 'string' && Buffer.isEncoding(encoding))) return 'an encoding Buffer does not know';
    } else if (!(chunk instanceof Uint8Array)) return 'a chunk that is neither text nor bytes';
  }
  return worker.stdout && worker.stderr ? null : 'a stream the cell does not read';
}

/** Installs the check on every worker of the cell's main thread (once, before the first starts). */
export function checkWorkerMessages(onForged: (threadId: number, why: string) => void): void {
  const proto = Worker.prototype as unknown as Record<symbol, (message: unknown) => void>;
  const onMessage = Object.getOwnPropertySymbols(proto).find((s) => s.description === 'kOnMessage');
  // Without it (a Node whose internals moved) there is nothing to check: Node's own handling stays.
  if (!onMessage) return;
  const handle = proto[onMessage]!;
  proto[onMessage] = function checkedOnMessage(this: Worker, message: unknown) {
    const forged = (why: string) => {
      onForged(this.threadId, why);
      void this.terminate();
    };
    const why = forgery(message, this);
    if (why) return forged(why);
    try {
      handle.call(this, message);
    } catch (err) {
      // An unknown type (assert.fail), a stream without the callback asked for, bytes that do not deserialize.
      forged(String((err as Error)?.message ?? err).slice(0, 200));
    }
  };
}

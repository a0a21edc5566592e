/**
 * Coalesces streamed token deltas into fewer, larger events: a token-per-event stream would cost one
 * database row and one socket frame per token. Text is flushed when it reaches `maxChars` or has waited
 * `maxDelayMs`, and always on flush(); nothing is ever dropped or reordered.
 */
export interface Coalescer {
  push(text: string): void;
  /** Emits what is buffered now (synchronous, so it can run inside an abort listener). */
  flush(): void;
  /** Stops the timer without emitting (the run is over). */
  dispose(): void;
}

export function createCoalescer(emit: (text: string) => void, options: { maxChars: number; maxDelayMs: number }): Coalescer {
  let buffer = '';
  let timer: NodeJS.Timeout | null = null;
  // An emit that throws from the timer would crash the worker; it is kept and rethrown on the
  // agent's own path at the next push or flush (a crossed output cap also stops the run by itself).
  let failure: unknown = null;

  const clearTimer = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  const drain = () => {
    clearTimer();
    if (!buffer) return;
    const text = buffer;
    buffer = '';
    emit(text);
  };
  const rethrow = () => {
    if (failure) throw failure;
  };

  return {
    push(text) {
      rethrow();
      if (!text) return;
      buffer += text;
      if (buffer.length >= options.maxChars) drain();
      else if (!timer) {
        timer = setTimeout(() => {
          try {
            drain();
          } catch (err) {
            failure ??= err;
          }
        }, options.maxDelayMs);
      }
    },
    flush() {
      rethrow();
      drain();
    },
    dispose() {
      clearTimer();
      buffer = '';
    },
  };
}

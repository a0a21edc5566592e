/**
 * Runs `task` at most once per `ms`, and never twice at once: calls made while it runs are folded into
 * one more run afterwards. Keeps the page's refreshes inside the server's per-user rate budget.
 */
export function coalesce(task: () => Promise<void>, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await task();
    } catch {
      // the task reports its own failures; the next call tries again
    } finally {
      running = false;
      if (again) {
        again = false;
        timer = setTimeout(run, ms);
      }
    }
  };
  return () => {
    timer ??= setTimeout(run, ms);
  };
}

/**
 * Caps and conversations, judged on the audit of run rows (audit.ts), replayed in the order the trigger
 * recorded the changes. A run occupies its user's cap and its conversation from the change that claims it (a
 * node becomes its owner, or it runs: history.ts holdsSlot) to the change that gives it back (no owner and
 * queued again) or finishes it (the release). At no point of the replay may a user have more than USER_MAX_CONCURRENT_RUNS
 * active runs, nor a conversation two. A finished row never changes again.
 *
 * Why the recorded order is a sound witness: each change is numbered by one sequence, inside the transaction
 * that makes it. If a release R had committed before a claim C read the rows it decided on, R's number was
 * drawn before that read, hence before C's own (drawn after the read, when C updates): so when the replay puts
 * C before R, C's transaction did not see R, and counted R's run as active when it claimed. A replay that shows
 * too many active runs is therefore a real breach, never an artefact of the order (it may miss breaches whose
 * transactions overlapped, never invent one).
 */
import { holdsSlot, isTerminal, type History, type Limits, type Transition } from '../history.js';
import type { Violation } from './violation.js';

/** Reports per user and per conversation are capped: one breach repeated a thousand times is one finding. */
const MAX_REPORTS_PER_KEY = 3;

export function checkOccupancy(transitions: readonly Transition[], limits: Limits): Violation[] {
  const caps = limits.queueInDatabase;
  const out: Violation[] = [];
  const status = new Map<string, string | null>();
  const activeByUser = new Map<string, Set<string>>();
  const activeByThread = new Map<string, Set<string>>();
  const reports = new Map<string, number>();
  const report = (key: string, v: Violation) => {
    const n = reports.get(key) ?? 0;
    if (n < MAX_REPORTS_PER_KEY) out.push(v);
    reports.set(key, n + 1);
  };
  const setOf = (map: Map<string, Set<string>>, key: string) => {
    let s = map.get(key);
    if (!s) map.set(key, (s = new Set()));
    return s;
  };

  for (const t of [...transitions].sort((a, b) => a.id - b.id)) {
    const before = status.has(t.runId) ? status.get(t.runId)! : t.from;
    if (isTerminal(before) && t.to !== before) {
      report(`rewrite:${t.runId}`, { kind: 'terminal_rewritten', runId: t.runId, message: `run ${t.runId} was ${before}, then ${t.to === null ? 'deleted' : `set to ${t.to}`} (change #${t.id})` });
    }
    status.set(t.runId, t.to);
    const user = setOf(activeByUser, t.userId);
    const thread = setOf(activeByThread, t.threadId);
    if (!holdsSlot(t)) {
      user.delete(t.runId);
      thread.delete(t.runId);
      continue;
    }
    const newlyActive = !user.has(t.runId);
    user.add(t.runId);
    thread.add(t.runId);
    if (!newlyActive || !caps) continue;
    if (user.size > limits.userMaxConcurrentRuns) {
      report(`cap:${t.userId}`, {
        kind: 'cap_exceeded',
        runId: t.runId,
        otherRunIds: [...user].filter((id) => id !== t.runId),
        message: `user ${t.userId} had ${user.size} runs active at change #${t.id} (USER_MAX_CONCURRENT_RUNS=${limits.userMaxConcurrentRuns}): ${[...user].join(', ')}`,
      });
    }
    if (thread.size > 1) {
      report(`thread:${t.threadId}`, {
        kind: 'thread_overlap',
        runId: t.runId,
        otherRunIds: [...thread].filter((id) => id !== t.runId),
        message: `thread ${t.threadId} had ${thread.size} runs active at change #${t.id}: ${[...thread].join(', ')}`,
      });
    }
  }
  return out;
}

export function checkOccupancyOf(h: History, limits: Limits): Violation[] {
  return h.transitions ? checkOccupancy(h.transitions, limits) : [];
}

/**
 * What the lingering suspects of a cell death cost (server/runs/cell-exits.ts, README threat model): a user with a
 * worker left in a cell, and no run inside, is weighed at its death. So a run alone in a serving cell beside such a
 * worker is not named on its first kill: it runs again alone in quarantine (a second cell start) before its user
 * is named; and a cell that dies with nothing inside counts as evidence against the users with workers there.
 */
import type { CellHandle } from '../../server/cells/cell-handle';
import { describeCellExit } from '../../server/cells/exit-cause';
import { createCellExits } from '../../server/runs/cell-exits';
import { createCellKillers, CELL_KILLER_EVIDENCE } from '../../server/runs/cell-killers';
import type { LiveRun } from '../../server/runs/live-run';

/** A counter that counts nothing, for every metric the cell exits touch. */
const noMetric = { inc: () => undefined };
const metrics = new Proxy({}, { get: () => noMetric });

function world(lingering: string[]) {
  const killers = createCellKillers({ cellKillerQuarantineMs: 60_000 });
  const runs = new Map<string, LiveRun>();
  const quarantined: string[] = [];
  const failed: { runId: string; code: string }[] = [];
  const exits = createCellExits({
    store: { markRequeued: async () => undefined } as never,
    relay: { queueWrite: () => undefined, append: () => undefined } as never,
    live: { get: (id: string) => runs.get(id) } as never,
    scheduler: { quarantine: (run: LiveRun) => quarantined.push(run.id), putBack: () => undefined, pump: () => undefined } as never,
    finishing: { failed: (run: LiveRun, error: { code: string }) => failed.push({ runId: run.id, code: error.code }), stopped: () => undefined, countFailureAffectingOthers: () => undefined } as never,
    deadlines: { clear: () => undefined } as never,
    cells: { agents: () => [] },
    killers,
    metrics: metrics as never,
    log: { warn: () => undefined, info: () => undefined } as never,
    settings: { maxRunAttempts: 3, cellKillerQuarantineMs: 60_000 },
  });
  let cells = 0;
  const cell = () =>
    ({
      id: `cell-${++cells}`,
      quarantine: false,
      undelivered: new Set<string>(),
      channelDrained: true,
      lastWorkerKillAt: null,
      killedAsWedged: false,
      wedgedBy: null,
      userWorkers: { usersWithWorkers: () => new Set(lingering) },
    }) as unknown as CellHandle;
  const runIn = (c: CellHandle, id: string, userId: string) => {
    const run = { id, userId, owner: userId, phase: 'running', cellId: c.id, stopReason: null, attempt: 1, agentName: 'echo', restarts: [], suspect: false, partialText: '', startedAt: Date.now(), dispatchedAt: Date.now() } as unknown as LiveRun;
    runs.set(id, run);
    return run;
  };
  return { exits, killers, cell, runIn, quarantined, failed };
}

const killed = describeCellExit(null, 'SIGKILL', '');

test('a run alone in its cell is named on its first kill; beside another user\'s worker it runs again in quarantine first', () => {
  const alone = world([]);
  const a = alone.cell();
  alone.runIn(a, 'r1', 'mallory');
  alone.exits.onCellExit(a, killed, ['r1']);
  expect(alone.failed).toEqual([{ runId: 'r1', code: 'WORKER_CRASHED' }]);
  expect(alone.killers.has('mallory')).toBe(true);

  // Alice has an idle worker in the cell: mallory's run is a suspect, not the culprit. It runs again alone in
  // quarantine (the second cell start), and nobody is quarantined yet.
  const beside = world(['alice']);
  const b = beside.cell();
  beside.runIn(b, 'r1', 'mallory');
  beside.exits.onCellExit(b, killed, ['r1']);
  expect(beside.failed).toEqual([]);
  expect(beside.quarantined).toEqual(['r1']);
  expect([beside.killers.has('mallory'), beside.killers.has('alice')]).toEqual([false, false]);
});

test('a cell that dies with no run inside counts as evidence against the users with workers in it', () => {
  const { exits, killers, cell } = world(['mallory']);
  for (let i = 1; i < CELL_KILLER_EVIDENCE; i++) {
    exits.onCellExit(cell(), killed, []);
    expect(killers.has('mallory')).toBe(false);
  }
  exits.onCellExit(cell(), killed, []);
  expect(killers.has('mallory')).toBe(true);
  // Without workers in them, empty cells' deaths name nobody.
  const none = world([]);
  for (let i = 0; i < CELL_KILLER_EVIDENCE; i++) none.exits.onCellExit(none.cell(), killed, []);
  expect(none.killers.any).toBe(false);
});

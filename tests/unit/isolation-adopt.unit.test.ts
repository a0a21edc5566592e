/**
 * The worker's Prisma client loads at a run's first ctx.db query and defines globals of its own: those become
 * part of the clean state (adoptChanges), while what the run itself changed before still shows.
 */
import { adoptChanges, changedGlobals, snapshotGlobals } from '../../workers/worker/isolation-check';

const g = globalThis as Record<string, unknown>;

afterEach(() => {
  for (const key of ['adoptRunLeak', 'adoptLoaderGlobal', 'adoptLoaderReplaced']) delete g[key];
});

test("a trusted load's globals join the clean state; the run's own changes before it still show", () => {
  g.adoptLoaderReplaced = 'original';
  const clean = snapshotGlobals();
  g.adoptRunLeak = 'left by the run'; // the run, before its first ctx.db query
  const before = snapshotGlobals();
  g.adoptLoaderGlobal = 'defined by the loader';
  g.adoptLoaderReplaced = 'replaced by the loader';
  const adopted = adoptChanges(clean, before, snapshotGlobals());
  expect(changedGlobals(adopted)).toEqual(['globalThis.adoptRunLeak']);
  delete g.adoptRunLeak;
  expect(changedGlobals(adopted)).toEqual([]);
  // The clean state it was built from is left as it was.
  expect(changedGlobals(clean).sort()).toEqual(['globalThis.adoptLoaderGlobal', 'globalThis.adoptLoaderReplaced']);
});

test('a global the run deleted before the load stays missing from the check; one the loader deleted is adopted', () => {
  g.adoptRunLeak = 'there at the start';
  g.adoptLoaderGlobal = 'there at the start too';
  const clean = snapshotGlobals();
  delete g.adoptRunLeak; // the run
  const before = snapshotGlobals();
  delete g.adoptLoaderGlobal; // the loader
  const adopted = adoptChanges(clean, before, snapshotGlobals());
  expect(changedGlobals(adopted)).toEqual(['globalThis.adoptRunLeak']);
});

test('nothing changed by the load: the clean state is returned as it was', () => {
  const clean = snapshotGlobals();
  const before = snapshotGlobals();
  const adopted = adoptChanges(clean, before, snapshotGlobals());
  adopted.forEach((snap, i) => expect(snap).toBe(clean[i]));
});

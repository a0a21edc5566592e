/**
 * Who is in quarantine for killing cells, and until when: each naming starts the window again; 0 turns it off;
 * the record is bounded (the user named longest ago is forgotten first).
 */
import { createCellKillers } from '../../server/runs/cell-killers';

test('a named user is in quarantine for the window after its latest naming, then out', () => {
  let now = 1000;
  const k = createCellKillers({ cellKillerQuarantineMs: 500 }, () => now);
  expect([k.has('u'), k.any]).toEqual([false, false]);
  k.named('u');
  expect([k.has('u'), k.has('v'), k.any]).toEqual([true, false, true]);
  now = 1400;
  k.named('u'); // named again: the window starts again
  now = 1800;
  expect(k.has('u')).toBe(true);
  now = 1900;
  expect([k.has('u'), k.any]).toEqual([false, false]);
});

test('0 turns it off', () => {
  const k = createCellKillers({ cellKillerQuarantineMs: 0 });
  k.named('u');
  expect([k.has('u'), k.any]).toEqual([false, false]);
});

test('bounded: past 10,000 users the one named longest ago is forgotten', () => {
  const k = createCellKillers({ cellKillerQuarantineMs: 60_000 });
  for (let i = 0; i <= 10_000; i++) k.named(`u${i}`);
  expect([k.has('u0'), k.has('u1'), k.has('u10000')]).toEqual([false, true, true]);
  k.named('u1'); // named again: now the latest
  k.named('extra');
  expect([k.has('u1'), k.has('u2')]).toEqual([true, false]);
});

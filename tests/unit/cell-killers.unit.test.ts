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

describe('deaths that name no culprit', () => {
  test('the one user common to the suspects of the last 3 within the window is named', () => {
    let now = 0;
    const k = createCellKillers({ cellKillerQuarantineMs: 1000 }, () => now);
    expect(k.unresolvedDeath(['evasive', 'a'])).toBeNull();
    now = 100;
    expect(k.unresolvedDeath(['b', 'evasive'])).toBeNull();
    expect(k.has('evasive')).toBe(false);
    now = 200;
    expect(k.unresolvedDeath(['c', 'evasive', 'd'])).toBe('evasive');
    expect([k.has('evasive'), k.has('a'), k.has('c')]).toEqual([true, false, false]);
    // The evidence was used: the next deaths start again.
    expect(k.unresolvedDeath(['c', 'd'])).toBeNull();
  });

  test('two users always in company are both spared; nobody is named on a guess', () => {
    const k = createCellKillers({ cellKillerQuarantineMs: 1000 });
    for (const company of ['a', 'b', 'c', 'd']) expect(k.unresolvedDeath(['evasive', 'busy', company])).toBeNull();
    expect([k.has('evasive'), k.has('busy')]).toEqual([false, false]);
  });

  test('only the last 3, and only within the window, count', () => {
    let now = 0;
    const k = createCellKillers({ cellKillerQuarantineMs: 1000 }, () => now);
    k.unresolvedDeath(['x', 'a']);
    now = 500;
    k.unresolvedDeath(['x', 'b']);
    now = 1200; // the first is out of the window: two left
    expect(k.unresolvedDeath(['x', 'c'])).toBeNull();
    now = 1300;
    expect(k.unresolvedDeath(['y', 'c'])).toBeNull();
    now = 1400; // x was in 2 of the last 3, c in all 3
    expect(k.unresolvedDeath(['y', 'c'])).toBe('c');
    expect(k.has('x')).toBe(false);
  });

  test('a death explained later (its suspect named the culprit in quarantine) no longer counts', () => {
    const k = createCellKillers({ cellKillerQuarantineMs: 1000 });
    k.unresolvedDeath(['loud', 'a']);
    k.unresolvedDeath(['loud', 'quiet']);
    k.named('loud');
    k.unresolvedDeath(['quiet', 'b']);
    expect(k.has('quiet')).toBe(false);
    expect(k.unresolvedDeath(['quiet'])).toBeNull();
    expect(k.unresolvedDeath(['quiet', 'c'])).toBe('quiet');
  });
});

/**
 * A user whose run killed its cell is put in quarantine (CELL_KILLER_QUARANTINE_MS): its next runs run alone in
 * the cell killers' quarantine cell, one at a time, so when it kills a cell again nobody else's run is inside.
 * Without it (0), the second kill takes another user's run with it: an agent unsafe to repeat fails as
 * collateral. The suspects of other cells' deaths never wait for the cell killers' runs.
 */
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, httpCall, metricValue, terminal } from './helpers/client';

const scrape = async (s: TestServer) => (await httpCall(s.url, 'GET', '/metrics')).body as string;
// One quarantine cell for suspects: the cell killers' own is quarantine2.
const ENV = { AGENTS_DIR: FIXTURE_AGENTS, ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '3', QUARANTINE_CELLS: '1' };
const KILLERS_CELL = /^quarantine2-g\d+$/;

/** One serving cell with three workers: without the quarantine whatever runs beside the killer shares its cell. */
async function twoKills(quarantineMs: string) {
  const server = await startServer({ ...ENV, CELL_KILLER_QUARANTINE_MS: quarantineMs });
  const [killer, other] = await Promise.all([UserClient.connect(server.url, 'killer'), UserClient.connect(server.url, 'bystander')]);
  try {
    // Alone in its cell: named the culprit at once.
    const first = await killer.start({ agent: 'chaos', input: { mode: 'abort', text: 'boom' } });
    expect(terminal(await killer.waitForRun(first.run_id, 60_000)).payload.error.code).toBe('WORKER_CRASHED');
    const afterFirst = await scrape(server);

    // Another user's run that must not run twice, running in the (replaced) serving cell.
    const unsafe = await other.start({ agent: 'unrepeatable', input: { text: 'x', ms: 120_000 } });
    await other.waitForEvent(unsafe.run_id, 'agent_started', 60_000);
    const second = await killer.start({ agent: 'chaos', input: { mode: 'abort', text: 'boom' } });
    const secondEvents = await killer.waitForRun(second.run_id, 60_000);
    expect(terminal(secondEvents).payload.error.code).toBe('WORKER_CRASHED');
    const secondOn = (await killer.http('GET', `/v1/runs/${second.run_id}`)).body.ran_on.cell as string;

    // The killer's ordinary runs are still served.
    const ok = await killer.start({ agent: 'echo', input: 'still served' });
    expect(terminal(await killer.waitForRun(ok.run_id, 60_000)).payload.final_response).toBe('still served');
    const okView = (await killer.http('GET', `/v1/runs/${ok.run_id}`)).body;
    const okOn = okView.ran_on.cell as string;

    // The bystander's run: still running, or already failed by the second kill.
    const unsafeNow = (await other.http('GET', `/v1/runs/${unsafe.run_id}`)).body;
    if (unsafeNow.status === 'running') await other.ack('stop_agent', { run_id: unsafe.run_id });
    const unsafeEnd = terminal(await other.waitForRun(unsafe.run_id, 60_000)).payload;
    const m = await scrape(server);
    return {
      // Run again after the death of a cell it shared (a suspect), before it was named.
      secondRestarted: secondEvents.filter((e) => e.type === 'run_restarted').length,
      secondOn,
      okOn,
      // A quarantine cell's worker serves one run: what a run leaves behind there ends with it.
      okRecycled: okView.isolation?.recycled ?? null,
      unsafeEnd,
      firstQuarantined: metricValue(afterFirst, 'atoll_cell_killers_quarantined_total'),
      quarantined: metricValue(m, 'atoll_cell_killers_quarantined_total'),
      collateral: metricValue(m, 'atoll_collateral_runs_total'),
      logged: server.logs.filter((l) => /killed its cell; the user's runs now run alone/.test(String(l.msg))).length,
    };
  } finally {
    [killer, other].forEach((c) => c.close());
    await server.stop();
  }
}

test('a user whose run killed its cell runs alone in quarantine cells: its next kill takes nobody with it', async () => {
  const r = await twoKills('600000');
  // Sent to a quarantine cell at once, where it was alone: no suspect, no second start.
  expect(r.secondRestarted).toBe(0);
  expect(r.secondOn).toMatch(KILLERS_CELL);
  expect(r.okOn).toMatch(KILLERS_CELL);
  expect(r.okRecycled).toBe('max_runs');
  expect(r.unsafeEnd).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
  // Counted and logged once, when the user was first named.
  expect({ first: r.firstQuarantined, all: r.quarantined, logged: r.logged, collateral: r.collateral }).toEqual({ first: 1, all: 1, logged: 1, collateral: 0 });
}, 240_000);

test('with CELL_KILLER_QUARANTINE_MS=0 the second kill is in the serving cell and takes the other user\'s run with it', async () => {
  const r = await twoKills('0');
  // It shared the serving cell, was a suspect of its death, and was named only when it killed a quarantine cell.
  expect(r.secondRestarted).toBe(1);
  expect(r.okOn).toMatch(/^cell1-g\d+$/);
  expect(r.unsafeEnd).toMatchObject({ status: 'failed', error: { code: 'WORKER_CRASHED', message: expect.stringMatching(/not safe to repeat/) } });
  expect({ all: r.quarantined, logged: r.logged, collateral: r.collateral }).toEqual({ all: 0, logged: 0, collateral: 1 });
}, 240_000);

test('the suspects of another cell\'s death do not wait for a cell killer\'s run: it has a quarantine cell of its own', async () => {
  const server = await startServer(ENV);
  const [killer, company, culprit] = await Promise.all(['killer', 'company', 'new-culprit'].map((u) => UserClient.connect(server.url, u)));
  try {
    const first = await killer.start({ agent: 'chaos', input: { mode: 'abort', text: 'boom' } });
    await killer.waitForRun(first.run_id, 60_000);
    // The killer's next run holds its cell until the test stops it.
    const long = await killer.start({ agent: 'chaos', input: { mode: 'slow', text: 'l', ms: 600_000 } });
    await killer.waitForEvent(long.run_id, 'agent_started', 60_000);
    expect((await killer.http('GET', `/v1/runs/${long.run_id}`)).body.ran_on.cell).toMatch(KILLERS_CELL);
    // A death with company in the serving cell: the company is a suspect and needs the one suspects' cell.
    // Long enough to be running when the culprit's run starts: that run needs a fresh worker of its own first, which
    // took over 2 s on a loaded machine, and a bystander of 2 s had ended (no restart to see).
    const bystander = await company.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 10_000 } });
    await company.waitForEvent(bystander.run_id, 'agent_started', 60_000);
    const bad = await culprit.start({ agent: 'chaos', input: { mode: 'abort', text: 'boom' } });
    const events = await company.waitForRun(bystander.run_id, 120_000);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: 'slept 10000 ms' });
    expect(events.filter((e) => e.type === 'run_restarted')).toHaveLength(1);
    expect(terminal(await culprit.waitForRun(bad.run_id, 60_000)).payload.error.code).toBe('WORKER_CRASHED');
    // All that while, the killer's run held its own cell.
    expect((await killer.http('GET', `/v1/runs/${long.run_id}`)).body.status).toBe('running');
    await killer.ack('stop_agent', { run_id: long.run_id });
    expect(terminal(await killer.waitForRun(long.run_id, 60_000)).payload.status).toBe('cancelled');
  } finally {
    [killer, company, culprit].forEach((c) => c.close());
    await server.stop();
  }
}, 240_000);

test('a killer that behaves in quarantine is named by evidence: the one user among the suspects of 3 unresolved deaths', async () => {
  const server = await startServer(ENV);
  const users = await Promise.all(['evasive', 'company-a', 'company-b', 'company-c'].map((u) => UserClient.connect(server.url, u)));
  const [killer, ...company] = users;
  try {
    for (const [i, other] of company.entries()) {
      // Company in the serving cell, held there until its gate opens (after the death, however slow the machine),
      // then the kill: both suspects, both run again alone, both complete there.
      const gate = `gate-${i}`;
      const bystander = await other.start({ agent: 'gated', input: { text: 's', gate, parts: 1 } });
      await other.waitForEvent(bystander.run_id, 'agent_started', 60_000);
      const kill = await killer.start({ agent: 'evasive', input: {} });
      // The cell died: open the gate (the two suspects share one quarantine cell, one after the other).
      await other.waitForEvent(bystander.run_id, 'run_restarted', 120_000);
      await other.http('POST', '/v1/threads', { title: gate });
      const killEvents = await killer.waitForRun(kill.run_id, 120_000);
      expect({ death: i + 1, end: terminal(killEvents).payload.status, final: terminal(killEvents).payload.final_response, restarted: killEvents.some((e) => e.type === 'run_restarted') }).toEqual({ death: i + 1, end: 'completed', final: 'behaved', restarted: true });
      const bystanderEvents = await other.waitForRun(bystander.run_id, 120_000);
      expect({ end: terminal(bystanderEvents).payload.status, restarted: bystanderEvents.some((e) => e.type === 'run_restarted') }).toEqual({ end: 'completed', restarted: true });
    }
    const m = await scrape(server);
    expect({ suspect: metricValue(m, 'atoll_cell_killers_quarantined_total', { evidence: 'suspect' }), culprit: metricValue(m, 'atoll_cell_killers_quarantined_total', { evidence: 'culprit' }) }).toEqual({ suspect: 1, culprit: 0 });
    expect(server.logs.filter((l) => l.evidence === 'suspect').map((l) => l.user_id)).toEqual(['evasive']);
    // Its next run goes alone to the cell killers' cell, where it behaves: no death, nobody restarted.
    const deaths = metricValue(m, 'atoll_cell_deaths_total');
    const next = await killer.start({ agent: 'evasive', input: {} });
    const nextEvents = await killer.waitForRun(next.run_id, 60_000);
    expect(terminal(nextEvents).payload.final_response).toBe('behaved');
    expect(nextEvents.some((e) => e.type === 'run_restarted')).toBe(false);
    expect((await killer.http('GET', `/v1/runs/${next.run_id}`)).body.ran_on.cell).toMatch(KILLERS_CELL);
    expect(metricValue(await scrape(server), 'atoll_cell_deaths_total')).toBe(deaths);
  } finally {
    users.forEach((c) => c.close());
    await server.stop();
  }
}, 300_000);

/**
 * A run that kills its cell once it is asked to stop (its user cancels it, or its time is up) ends as stopped:
 * it was no suspect, so the one other run inside was "alone" and named the culprit (it failed, its user was put in
 * quarantine: one kill framed it), and the evidence never saw the killer's user. Now a stopped run that had run
 * is company, and its user is among the evidence.
 */
async function stopKills(companyNames: string[], agent = 'stop-killer') {
  // The killer's run must end with its cell's death, not be settled by the front first (CANCEL_GRACE_MS + 1.5 s after
  // the stop): beside two CPU burners the death took longer to judge than the default's 2 s. The freezer's run is
  // settled by the front: the default keeps that short.
  const server = await startServer({ ...ENV, ...(agent === 'stop-killer' ? { CANCEL_GRACE_MS: '10000' } : {}) });
  const users = await Promise.all([agent, ...new Set(companyNames)].map((u) => UserClient.connect(server.url, u)));
  const byName = new Map(users.map((c, i) => [i === 0 ? agent : [...new Set(companyNames)][i - 1], c]));
  const killer = users[0];
  try {
    for (const [i, name] of companyNames.entries()) {
      const other = byName.get(name)!;
      const gate = `gate-${i}`;
      const bystander = await other.start({ agent: 'gated', input: { text: 's', gate, parts: 1 } });
      await other.waitForEvent(bystander.run_id, 'agent_started', 60_000);
      const kill = await killer.start({ agent, input: {} });
      await killer.waitForEvent(kill.run_id, 'agent_started', 60_000);
      await killer.ack('stop_agent', { run_id: kill.run_id });
      if (agent === 'stop-killer') {
        // Ended once its cell's death was judged: the bystander has been run again, or failed, by then.
        expect(terminal(await killer.waitForRun(kill.run_id, 60_000)).payload).toMatchObject({ status: 'cancelled', error: { message: expect.stringMatching(/its cell ended/) } });
      } else {
        // Settled by the front; its cell, stopped, is killed as wedged some 10 s later.
        expect(terminal(await killer.waitForRun(kill.run_id, 60_000)).payload.status).toBe('cancelled');
        await other.waitForEvent(bystander.run_id, 'run_restarted', 60_000);
      }
      await other.http('POST', '/v1/threads', { title: gate });
      const events = await other.waitForRun(bystander.run_id, 120_000);
      expect({ death: i + 1, end: terminal(events).payload.status, restarted: events.some((e) => e.type === 'run_restarted') }).toEqual({ death: i + 1, end: 'completed', restarted: true });
    }
    // Every user put in quarantine, and on what evidence.
    return server.logs.filter((l) => l.evidence).map((l) => `${l.user_id}: ${l.evidence}`);
  } finally {
    users.forEach((c) => c.close());
    await server.stop();
  }
}

test('a run that kills its cell once asked to stop does not get the busy user beside it put in quarantine', async () => {
  // Always in the same company: both spared.
  expect(await stopKills(['busy', 'busy', 'busy'])).toEqual([]);
}, 300_000);

test('a run that kills its cell once asked to stop is named by evidence like any other', async () => {
  expect(await stopKills(['company-a', 'company-b', 'company-c'])).toEqual(['stop-killer: suspect']);
}, 300_000);

/**
 * Once asked to stop, a run stops its own cell (SIGSTOP): the front settles the run (it has ended) and, the cell
 * still holding it, kills the cell as wedged. Its user was in no evidence, the other users inside were: three such
 * kills beside the same busy user put that user in quarantine, never the killer.
 */
test('a run that wedges its cell once asked to stop does not get the busy user beside it put in quarantine', async () => {
  expect(await stopKills(['busy', 'busy', 'busy'], 'stop-freezer')).toEqual([]);
}, 300_000);

test('a run that wedges its cell once asked to stop is named by evidence like any other', async () => {
  expect(await stopKills(['company-a', 'company-b', 'company-c'], 'stop-freezer')).toEqual(['stop-freezer: suspect']);
}, 300_000);

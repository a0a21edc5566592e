/**
 * What the front does about cells that misbehave as processes: a wedged cell (alive, silent) does not keep
 * its runs from ending, and is killed; a cell that keeps dying is restarted with a growing backoff.
 * Every waiting step waits for a state (a log line, an event) with a generous bound, never for a time.
 */
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, httpCall, metricValue, terminal, type Envelope } from './helpers/client';
import { expectPersistedTerminal } from './helpers/run-checks';

type Log = Record<string, unknown>;
const scrape = async (s: TestServer) => (await httpCall(s.url, 'GET', '/metrics')).body as string;

/** The first log line that matches, waited for (the server's output is read as it comes). */
async function logLine(server: TestServer, match: (l: Log) => boolean, what: string, timeoutMs = 60_000): Promise<Log> {
  let found: Log | undefined;
  if (!(await eventually(() => (found = server.logs.find(match)) !== undefined, timeoutMs, 50))) throw new Error(`no log line ${what} in ${timeoutMs} ms`);
  return found!;
}

describe('a wedged cell: alive, but it answers nothing', () => {
  let server: TestServer;
  let user: UserClient;
  beforeAll(async () => {
    // RUN_TIMEOUT_MS: long enough that the test has surely wedged the cell before the cell's own deadline for a
    // run could fire, short enough for the front's deadline (RUN_TIMEOUT_MS + CANCEL_GRACE_MS + 1.5 s) to come soon.
    // CELL_SILENCE_TIMEOUT_MS: out of the way, so these tests see the stop and deadline paths (silence has its own).
    server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, CELLS: '2', THREADS_PER_CELL: '2', RUN_TIMEOUT_MS: '15000', CANCEL_GRACE_MS: '500', CELL_SILENCE_TIMEOUT_MS: '600000' });
    user = await UserClient.connect(server.url, 'wedged');
  });
  afterAll(async () => {
    user?.close();
    await server?.stop();
  });

  const nextGeneration = (cell: string) => cell.replace(/g(\d+)$/, (_, g) => `g${Number(g) + 1}`);

  /** Starts gated runs of the user (one user's runs share a cell while it has room), waits until they run. */
  async function runsInOneCell(gate: string, texts: string[]) {
    const runs = await Promise.all(texts.map((text) => user.start({ agent: 'gated', input: { text, gate, parts: 2 } })));
    await Promise.all(runs.map((r) => user.waitForEvent(r.run_id, 'agent_started', 60_000)));
    const cells = await Promise.all(runs.map(async (r) => (await user.http('GET', `/v1/runs/${r.run_id}`)).body.ran_on.cell as string));
    expect(new Set(cells).size).toBe(1);
    const pid = (await logLine(server, (l) => l.msg === 'cell ready' && l.cell === cells[0], `cell ready ${cells[0]}`)).pid as number;
    return { runs, cell: cells[0], pid };
  }

  /**
   * Wedges the whole cell process, its OS threads and its event loop: SIGSTOP is the most complete way to make a
   * cell that stays alive and never answers (a native call that never returns, a blocked main thread).
   */
  async function whileWedged(pid: number, body: () => Promise<void>): Promise<void> {
    process.kill(pid, 'SIGSTOP');
    try {
      await body();
    } finally {
      // Whatever happened, never leave a stopped process behind.
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  test('a stopped run: the front settles it, kills the cell, and the run beside it is run again elsewhere', async () => {
    const gate = `gate-stop-${Date.now()}`;
    const { runs: [stopped, beside], cell, pid } = await runsInOneCell(gate, ['stopped', 'beside']);
    let stopEnd!: Envelope;
    let kill!: Record<string, unknown>;
    await whileWedged(pid, async () => {
      await user.ack('stop_agent', { run_id: stopped.run_id });
      // The cell cannot settle the stop: the front does, after CANCEL_GRACE_MS and its margin.
      stopEnd = terminal(await user.waitForRun(stopped.run_id, 60_000));
      expect(stopEnd.payload).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
      await logLine(server, (l) => l.msg === 'cell did not settle a stopped run in time; settling it in the front' && l.run_id === stopped.run_id, 'front settled the stop');
      // Still holding a run the front settled: the cell is killed and a new generation takes its slot.
      kill = await logLine(server, (l) => l.msg === 'cell still holds a stopped run; killing the cell' && l.cell === cell, 'wedged cell killed');
      await logLine(server, (l) => l.msg === 'cell died' && l.cell === cell && l.cause === 'killed', 'wedged cell died');
    });
    // Settled by the front while the cell was still alive, not by the cell's death (which would settle it too).
    expect(Date.parse(stopEnd.timestamp)).toBeLessThan(Date.parse(String(kill.time)));
    await logLine(server, (l) => l.msg === 'cell ready' && l.cell === nextGeneration(cell), `cell ready ${nextGeneration(cell)}`);

    // The front killed the cell, not the run beside: it is not blamed, it is run again in quarantine.
    await user.waitForEvent(beside.run_id, 'run_restarted', 60_000);
    await user.http('POST', '/v1/threads', { title: gate });
    const besideEvents = await user.waitForRun(beside.run_id, 60_000);
    expect(terminal(besideEvents).payload).toMatchObject({ status: 'completed', final_response: 'beside-0 beside-1 ' });
    expect(besideEvents.filter((e) => e.type === 'run_restarted').map((e) => e.payload)).toEqual([{ attempt: 2, reason: 'killed' }]);
    expect(metricValue(await scrape(server), 'atoll_cell_deaths_total', { cause: 'killed' })).toBe(1);

    // The stopped run was settled once, before the death: never run again nor settled twice, on the socket or in the log.
    expect(user.runEvents(stopped.run_id).filter((e) => e.type === 'run_restarted' || e.type === 'agent_completed').map((e) => e.type)).toEqual(['agent_completed']);
    for (const r of [stopped, beside]) await expectPersistedTerminal(user, r.run_id);
    expect((await user.http('GET', `/v1/runs/${stopped.run_id}`)).body.status).toBe('cancelled');
  }, 180_000);

  test('a run past its deadline: the front ends it with TIMEOUT, then kills the cell', async () => {
    const { runs: [timed], cell, pid } = await runsInOneCell(`never-${Date.now()}`, ['timed']);
    let timeoutEnd!: Envelope;
    let kill!: Record<string, unknown>;
    await whileWedged(pid, async () => {
      // The deadline passes in a cell that cannot enforce it: the front's own deadline ends the run.
      timeoutEnd = terminal(await user.waitForRun(timed.run_id, 90_000));
      expect(timeoutEnd.payload).toMatchObject({ status: 'timeout', error: { code: 'TIMEOUT' } });
      await logLine(server, (l) => l.msg === 'run outlived its deadline in the cell' && l.run_id === timed.run_id, 'front deadline');
      kill = await logLine(server, (l) => l.msg === 'cell still holds a stopped run; killing the cell' && l.cell === cell, 'wedged cell killed');
      await logLine(server, (l) => l.msg === 'cell died' && l.cell === cell && l.cause === 'killed', 'wedged cell died');
    });
    expect(Date.parse(timeoutEnd.timestamp)).toBeLessThan(Date.parse(String(kill.time)));
    await logLine(server, (l) => l.msg === 'cell ready' && l.cell === nextGeneration(cell), `cell ready ${nextGeneration(cell)}`);
    expect(user.runEvents(timed.run_id).filter((e) => e.type === 'run_restarted' || e.type === 'agent_completed').map((e) => e.type)).toEqual(['agent_completed']);
    await expectPersistedTerminal(user, timed.run_id);
    expect((await user.http('GET', `/v1/runs/${timed.run_id}`)).body.status).toBe('timeout');
    // And the user is served again.
    const after = await user.start({ agent: 'echo', input: 'after the wedge' });
    expect(terminal(await user.waitForRun(after.run_id, 60_000)).payload.final_response).toBe('after the wedge');
  }, 180_000);
});

describe('a silent cell: nobody stopped its runs and no deadline is near', () => {
  let server: TestServer;
  let user: UserClient;
  beforeAll(async () => {
    // No deadline can end the run (600 s): only the front noticing the silence can.
    server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, CELLS: '2', THREADS_PER_CELL: '2', RUN_TIMEOUT_MS: '600000', CELL_SILENCE_TIMEOUT_MS: '5000' });
    user = await UserClient.connect(server.url, 'silent');
  });
  afterAll(async () => {
    user?.close();
    await server?.stop();
  });

  test('is killed; the run inside is not blamed, runs again in quarantine and completes', async () => {
    const gate = `gate-silent-${Date.now()}`;
    const run = await user.start({ agent: 'gated', input: { text: 'inside', gate, parts: 2 } });
    await user.waitForEvent(run.run_id, 'agent_started', 60_000);
    const cell = (await user.http('GET', `/v1/runs/${run.run_id}`)).body.ran_on.cell as string;
    const pid = (await logLine(server, (l) => l.msg === 'cell ready' && l.cell === cell, `cell ready ${cell}`)).pid as number;
    process.kill(pid, 'SIGSTOP');
    try {
      const silent = await logLine(server, (l) => l.msg === 'cell silent; killing it' && l.cell === cell, 'silent cell killed', 90_000);
      expect(silent.silent_ms).toBeGreaterThanOrEqual(5000);
      await logLine(server, (l) => l.msg === 'cell died' && l.cell === cell && l.cause === 'killed', 'silent cell died');
    } finally {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // Alone in its cell and started, it would look like the culprit; the front killed the cell, so it is a suspect.
    await user.waitForEvent(run.run_id, 'run_restarted', 60_000);
    await user.http('POST', '/v1/threads', { title: gate });
    const events = await user.waitForRun(run.run_id, 60_000);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: 'inside-0 inside-1 ' });
    expect(events.filter((e) => e.type === 'run_restarted').map((e) => e.payload)).toEqual([{ attempt: 2, reason: 'killed' }]);
    await expectPersistedTerminal(user, run.run_id);
  }, 180_000);
});

describe('a cell that dies holding a run it had not started', () => {
  let server: TestServer;
  let user: UserClient;
  beforeAll(async () => {
    // One cell, so the run can only be sent to it; debug logs for the front's 'run dispatched' line.
    server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, CELLS: '1', THREADS_PER_CELL: '1', CELL_SILENCE_TIMEOUT_MS: '600000', LOG_LEVEL: 'debug' });
    user = await UserClient.connect(server.url, 'unstarted');
  });
  afterAll(async () => {
    user?.close();
    await server?.stop();
  });

  test('the run never ran agent code, so it is no suspect: it runs on the replacement with no restart and no quarantine', async () => {
    const warm = await user.start({ agent: 'echo', input: 'warm' });
    await user.waitForRun(warm.run_id, 60_000);
    const pid = (await logLine(server, (l) => l.msg === 'cell ready' && l.cell === 'cell1-g1', 'cell ready cell1-g1')).pid as number;
    // Stopped, the cell cannot read the assignment: it is in the pipe (delivered) when the cell dies, never started.
    process.kill(pid, 'SIGSTOP');
    let run!: { run_id: string };
    try {
      run = await user.start({ agent: 'echo', input: 'unstarted' });
      await logLine(server, (l) => l.msg === 'run dispatched' && l.run_id === run.run_id && l.cell === 'cell1-g1', 'run dispatched to the stopped cell');
    } finally {
      process.kill(pid, 'SIGKILL');
    }
    const events = await user.waitForRun(run.run_id, 60_000);
    // While it waits for the replacement it may hear run_queued (a busy machine); never run_restarted.
    expect(events.map((e) => e.type).filter((t) => t !== 'run_queued')).toEqual(['message_received', 'agent_started', 'agent_thinking', 'agent_completed']);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: 'unstarted' });
    const row = (await user.http('GET', `/v1/runs/${run.run_id}`)).body;
    // Sent twice, so two attempts; served by the replacement, never by a quarantine cell.
    expect({ cell: row.ran_on.cell, attempts: row.attempts }).toEqual({ cell: 'cell1-g2', attempts: 2 });
    const metrics = await scrape(server);
    expect(metricValue(metrics, 'atoll_cell_deaths_total', { cause: 'killed' })).toBe(1);
    expect(server.logs.filter((l) => String(l.cell ?? '').startsWith('quarantine'))).toEqual([]);
    await expectPersistedTerminal(user, run.run_id);
  }, 120_000);

  test('a run that kills its cell in its agent\'s constructor is the culprit at once: its start was written before any agent code', async () => {
    const diedBefore = server.logs.filter((l) => l.msg === 'cell died').length;
    const run = await user.start({ agent: 'doomed', input: 'x' });
    const end = terminal(await user.waitForRun(run.run_id, 60_000));
    // Had the cell died before the front heard of the start, the run would look unstarted, be sent again unsuspected
    // and kill cell after cell until its attempts ran out ("gave up after 3 attempts").
    expect({ code: end.payload.error.code, gaveUp: /gave up/.test(end.payload.error.message) }).toEqual({ code: 'WORKER_CRASHED', gaveUp: false });
    expect((await user.http('GET', `/v1/runs/${run.run_id}`)).body.attempts).toBe(1);
    expect(server.logs.filter((l) => l.msg === 'cell died').length - diedBefore).toBe(1);
    await expectPersistedTerminal(user, run.run_id);
  }, 120_000);
});

describe('a cell that keeps dying', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, CELLS: '2', THREADS_PER_CELL: '1' });
  });
  afterAll(() => server?.stop());

  test('is restarted after a backoff that grows with each death', async () => {
    const KILLS = 5;
    for (let g = 1; g <= KILLS; g++) {
      const ready = await logLine(server, (l) => l.msg === 'cell ready' && l.cell === `cell1-g${g}`, `cell ready cell1-g${g}`);
      process.kill(ready.pid as number, 'SIGKILL');
    }
    await logLine(server, (l) => l.msg === 'cell ready' && l.cell === `cell1-g${KILLS + 1}`, `cell ready cell1-g${KILLS + 1}`);

    const delays: number[] = [];
    for (let g = 1; g <= KILLS; g++) {
      const died = server.logs.find((l) => l.msg === 'cell died' && l.cell === `cell1-g${g}`)!;
      const starting = server.logs.find((l) => l.msg === 'cell starting' && l.cell === `cell1-g${g + 1}`)!;
      expect(died).toMatchObject({ cause: 'killed', restart_in_ms: expect.any(Number) });
      delays.push(died.restart_in_ms as number);
      // The replacement was not started before its backoff was over (load can only make the wait longer); the
      // death is logged once its cause is known, a moment after the exit the backoff counts from.
      expect(Date.parse(String(starting.time)) - Date.parse(String(died.died_at))).toBeGreaterThanOrEqual(died.restart_in_ms as number);
    }
    // The first replacement is immediate; each further death of a young cell doubles the wait.
    expect(delays[0]).toBe(0);
    for (let i = 2; i < KILLS; i++) expect(delays[i]).toBe(2 * delays[i - 1]);
    expect(delays[1]).toBeGreaterThan(0);
    const m = await scrape(server);
    expect(metricValue(m, 'atoll_cell_deaths_total', { cause: 'killed' })).toBe(KILLS);
    // The other cell was never touched, and the slot serves again.
    expect(server.logs.filter((l) => l.msg === 'cell starting' && String(l.cell).startsWith('cell2-'))).toHaveLength(1);
    expect(await eventually(async () => metricValue(await scrape(server), 'atoll_cells_alive') === 2, 60_000)).toBe(true);
  }, 180_000);
});

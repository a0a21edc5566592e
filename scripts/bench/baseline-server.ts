/**
 * A bench-only server speaking the subset of Atoll's socket protocol the driver uses (start_agent with an
 * acknowledgement, the same event envelopes, agent_completed last), without a database or auth, around
 * one of the baseline executors. Runs beyond --slots wait in a FIFO, like Atoll's queue.
 *
 *   node dist/scripts/bench/baseline-server.js --mode in-process|process-per-run --slots N
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Server } from 'socket.io';
import { intFlag, parseFlags, stringFlag } from '../load/argv.js';
import { inProcessExecutor, processPerRunExecutor, type Executor, type RunRequest } from './baseline-executors.js';

function main(): void {
  const flags = parseFlags(process.argv.slice(2), { mode: 'value', slots: 'value' });
  const mode = stringFlag(flags, 'mode', 'in-process');
  if (mode !== 'in-process' && mode !== 'process-per-run') throw new Error(`--mode must be in-process or process-per-run (got ${mode})`);
  const slots = intFlag(flags, 'slots', 4, 1, 1024);
  const executor: Executor = mode === 'in-process' ? inProcessExecutor() : processPerRunExecutor();

  const server = http.createServer((req, res) => {
    // The bench reads every pid of this design (server and run processes) to measure its memory.
    if (req.url === '/pids') return void res.setHeader('content-type', 'application/json').end(JSON.stringify({ pids: executor.pids() }));
    res.statusCode = 404;
    res.end();
  });
  const io = new Server(server, { serveClient: false });
  const queue: (() => void)[] = [];
  let busy = 0;
  const release = () => {
    busy--;
    const next = queue.shift();
    if (next) next();
  };
  const acquire = () => new Promise<void>((resolve) => (busy < slots ? (busy++, resolve()) : queue.push(() => (busy++, resolve()))));

  io.on('connection', (socket) => {
    const userId = `user-${socket.id}`;
    socket.on('start_agent', (payload: { agent?: unknown; input?: unknown }, ack: (r: unknown) => void) => {
      if (typeof payload?.agent !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(payload.agent)) return ack({ error: { code: 'BAD_REQUEST', message: 'agent' } });
      const input = (typeof payload.input === 'string' ? { text: payload.input } : payload.input) as RunRequest['input'];
      const req: RunRequest = { runId: randomUUID(), userId, agent: payload.agent, input };
      const threadId = randomUUID();
      let seq = 0;
      const emit = (type: string, body: Record<string, unknown>) =>
        socket.emit(type, { type, event_id: randomUUID(), seq: ++seq, run_id: req.runId, thread_id: threadId, user_id: userId, agent_name: req.agent, timestamp: new Date().toISOString(), payload: body });
      ack({ run_id: req.runId, thread_id: threadId });
      emit('message_received', { correlation_id: null });
      const started = Date.now();
      void acquire()
        .then(() => {
          emit('agent_started', { status: 'running', message: `agent ${req.agent} started` });
          return executor.run(req, emit);
        })
        .then(
          (result) => emit('agent_completed', { status: 'completed', success: true, final_response: result as never, execution_time_ms: Date.now() - started }),
          (err) => emit('agent_completed', { status: 'failed', success: false, final_response: null, error: { code: 'AGENT_ERROR', message: String(err?.message ?? err) }, execution_time_ms: Date.now() - started }),
        )
        .finally(release);
    });
  });

  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address ? address.port : null, mode, slots }) + '\n');
  });
  process.once('SIGTERM', () => {
    io.close();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}

main();

/**
 * Request replay: `POST /v1/runs/:id/replay` starts a new run of the same agent with the same input on the
 * same thread, in a fresh context like every run, linked to the original (`replay_of`), so a failure can
 * be reproduced. Only the run's owner can replay it; another user's run answers like an unknown one.
 */
import { Router } from 'express';
import { CodedError } from '../../../protocol/errors.js';
import { IdParam, parse } from '../../../protocol/requests.js';
import type { RunService } from '../../runs/run-service.js';
import type { RunStore } from '../../store/store.js';
import { userOf } from '../auth.js';
import { runView } from '../views.js';

export function replayRoutes(deps: { store: RunStore; runs: RunService }): Router {
  const r = Router();
  r.post('/runs/:id/replay', async (req, res) => {
    const userId = userOf(res);
    const original = await deps.store.findRun(userId, parse(IdParam, req.params.id, 'run id'));
    if (!original) throw new CodedError('NOT_FOUND', 'no such run');
    const run = await deps.runs.start(userId, {
      agent: original.agentName,
      input: original.input,
      threadId: original.threadId,
      // A new request: no correlation id, so idempotency never hands back an earlier run.
      correlationId: null,
      // Waits behind a run the thread may still have, like any follow-up message.
      multitask: 'enqueue',
      replayOf: original.id,
    });
    res.status(202).json(runView(run));
  });
  return r;
}

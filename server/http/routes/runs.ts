/** Threads, messages, runs, their event logs, and cancellation. */
import { randomUUID } from 'node:crypto';
import { Router } from 'express';
import { CodedError } from '../../../protocol/errors.js';
import type { AnyRunEventEnvelope } from '../../../protocol/events.js';
import { CreateThreadBody, EventsQuery, IdParam, IdempotencyKey, PageQuery, ThreadRunBody, ThreadsQuery, normalizeInput, parse, parseRunStart } from '../../../protocol/requests.js';
import type { HttpSettings } from '../../config-views.js';
import type { RunService } from '../../runs/run-service.js';
import type { RunStore } from '../../store/store.js';
import { userOf } from '../auth.js';
import type { MessagePage, RunEventsPage, ThreadPage, UsageView } from '../../../protocol/views.js';
import { messageView, pageBySize, runView, threadCursorOf, threadView } from '../views.js';

/**
 * What one page of messages or events may hold, serialized (at least one item, so paging advances): the
 * socket's history and replays are capped the same way, so a user cannot make the front build (and hold, for a
 * client that does not read) answers of many MiB: 100 messages or 1000 events can reach 6–64 MiB.
 */
export const PAGE_MAX_BYTES = 1024 * 1024;

export function runRoutes(deps: { store: RunStore; runs: RunService; settings: Pick<HttpSettings, 'maxInputBytes' | 'userMaxStoredBytes'> }): Router {
  const { store, runs } = deps;
  const r = Router();

  const ownThread = async (userId: string, raw: unknown) => {
    const thread = await store.findThread(userId, parse(IdParam, raw, 'thread id'));
    if (!thread) throw new CodedError('NOT_FOUND', 'no such thread');
    return thread;
  };
  const ownRun = async (userId: string, raw: unknown) => {
    const run = await store.findRun(userId, parse(IdParam, raw, 'run id'));
    if (!run) throw new CodedError('NOT_FOUND', 'no such run');
    return run;
  };

  r.post('/threads', async (req, res) => {
    const body = parse(CreateThreadBody, req.body ?? {}, 'body');
    const thread = await store.createThread(userOf(res), randomUUID(), body.title ?? null);
    res.status(201).json(threadView(thread));
  });

  r.get('/threads', async (req, res) => {
    const q = parse(ThreadsQuery, req.query, 'query');
    const before = q.before ? { updatedAt: new Date(q.before.updatedAt), threadId: q.before.threadId } : null;
    const threads = await store.listThreads(userOf(res), q.limit, before);
    const last = threads.at(-1);
    res.json({ threads: threads.map(threadView), next_before: threads.length === q.limit && last ? threadCursorOf(last) : null } satisfies ThreadPage);
  });

  r.get('/usage', async (_req, res) => {
    const limit = deps.settings.userMaxStoredBytes;
    res.json({ stored_bytes: await store.storedBytes(userOf(res)), max_stored_bytes: limit === 0 ? null : limit } satisfies UsageView);
  });

  // A thread with everything in it (messages, runs, their events), and its bytes off the user's stored total
  // (USER_MAX_STORED_BYTES). Not while a run of it waits or runs: stop it first.
  r.delete('/threads/:id', async (req, res) => {
    const userId = userOf(res);
    const threadId = parse(IdParam, req.params.id, 'thread id');
    const outcome = await store.deleteThread(userId, threadId);
    if (outcome === 'missing') throw new CodedError('NOT_FOUND', 'no such thread');
    if (outcome === 'busy') throw new CodedError('THREAD_BUSY', `thread ${threadId} has a run queued or in progress; stop it (POST /v1/runs/:id/cancel) and delete the thread once it has ended`, { retryAfterSeconds: 1 });
    res.status(204).end();
  });

  r.get('/threads/:id/messages', async (req, res) => {
    const thread = await ownThread(userOf(res), req.params.id);
    const q = parse(PageQuery, req.query, 'query');
    const page = pageBySize((await store.listMessages(thread.id, q.limit, q.after, PAGE_MAX_BYTES)).map(messageView), q.limit, PAGE_MAX_BYTES);
    res.json({ messages: page.items, next_after: page.nextAfter } satisfies MessagePage);
  });

  r.post('/threads/:id/runs', async (req, res) => {
    const userId = userOf(res);
    const thread = await ownThread(userId, req.params.id);
    const body = parseRunStart(ThreadRunBody, req.body ?? {}, 'body', deps.settings.maxInputBytes);
    // The Idempotency-Key header, when present, is the correlation id.
    const header = req.get('idempotency-key');
    const correlationId = body.correlation_id ?? (header ? parse(IdempotencyKey, header, 'Idempotency-Key header') : null);
    const run = await runs.start(userId, {
      agent: body.agent,
      input: normalizeInput(body.input, deps.settings.maxInputBytes),
      threadId: thread.id,
      correlationId,
      multitask: body.multitask,
    });
    if (run.deduplicated) res.setHeader('Idempotent-Replayed', 'true');
    res.status(202).json(runView(run));
  });

  r.get('/runs/:id', async (req, res) => {
    res.json(runView(await ownRun(userOf(res), req.params.id)));
  });

  r.get('/runs/:id/events', async (req, res) => {
    const run = await ownRun(userOf(res), req.params.id);
    const q = parse(EventsQuery, req.query, 'query');
    const events = (await store.listEvents(run, q.after_seq, q.limit, PAGE_MAX_BYTES)) as AnyRunEventEnvelope[];
    const page = pageBySize(events, q.limit, PAGE_MAX_BYTES, (e) => e.seq);
    res.json({ run_id: run.id, status: run.status, events: page.items, next_after_seq: page.nextAfter } satisfies RunEventsPage);
  });

  r.post('/runs/:id/cancel', async (req, res) => {
    const userId = userOf(res);
    const run = await runs.cancel(userId, parse(IdParam, req.params.id, 'run id'));
    res.status(202).json(runView(run));
  });

  return r;
}

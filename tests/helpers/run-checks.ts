/**
 * Checks on what the server kept, not only on what a socket saw: a run's persisted event log, read back over
 * HTTP, and a bounded request (a server that stops answering fails the check instead of hanging the test).
 */
import type { Envelope, UserClient } from './client';

/** The run's whole persisted log (`GET /v1/runs/:id/events`, page by page: pages are capped by size). */
export async function persistedEvents(client: UserClient, runId: string): Promise<Envelope[]> {
  const events: Envelope[] = [];
  for (let after: number | null = 0; after !== null; ) {
    const res = await client.http('GET', `/v1/runs/${runId}/events?after_seq=${after}&limit=1000`);
    if (res.status !== 200) throw new Error(`GET /v1/runs/${runId}/events answered ${res.status}`);
    events.push(...(res.body.events as Envelope[]));
    after = res.body.next_after_seq as number | null;
  }
  return events;
}

/**
 * The persisted log holds exactly one agent_completed, as its last event, with seqs 1..n, and it is the one the
 * socket delivered. Returns the terminal event.
 */
export async function expectPersistedTerminal(client: UserClient, runId: string): Promise<Envelope> {
  const events = await persistedEvents(client, runId);
  const terminals = events.filter((e) => e.type === 'agent_completed');
  if (terminals.length !== 1) throw new Error(`run ${runId}: ${terminals.length} persisted agent_completed events (${events.map((e) => e.type).join(',')})`);
  if (events[events.length - 1] !== terminals[0]) throw new Error(`run ${runId}: events persisted after agent_completed (${events.map((e) => e.type).join(',')})`);
  const seqs = events.map((e) => e.seq);
  if (seqs.some((s, i) => s !== i + 1)) throw new Error(`run ${runId}: persisted seqs ${seqs.join(',')} are not 1..${seqs.length}`);
  const delivered = client.runEvents(runId).filter((e) => e.type === 'agent_completed');
  if (delivered.length > 0 && delivered[0].event_id !== terminals[0].event_id) throw new Error(`run ${runId}: the delivered agent_completed is not the persisted one`);
  return terminals[0];
}

/** GET with a bound: resolves with the status, or 0 when the server did not answer within `timeoutMs`. */
export async function boundedStatus(url: string, path: string, timeoutMs: number): Promise<number> {
  try {
    const res = await fetch(url + path, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

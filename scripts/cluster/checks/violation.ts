/** What the checker can find wrong, each kind with the contract line it breaks (printed with every report). */

export const VIOLATION_KINDS = {
  acked_run_missing: 'an acknowledged run has no row, or its row belongs to another user or thread',
  not_settled: 'a run is still queued or running once everything has settled',
  seq_gap: "a run's logged seqs are not 1..n, or its first event is not message_received",
  terminal_count: 'a run has no agent_completed, or more than one',
  terminal_not_last: "a run's agent_completed is not its last event",
  status_mismatch: "a run's agent_completed does not match its row (status or error code)",
  attempts_exceeded: 'a run was started more than MAX_RUN_ATTEMPTS times',
  restart_duplicate: 'a run was restarted twice for one attempt, or its run_restarted attempt numbers are wrong',
  unrepeatable_rerun: 'an agent that is not repeatable was run again',
  terminal_rewritten: 'a finished run row changed afterwards (status or deleted)',
  cap_exceeded: 'more runs of one user were active at once than USER_MAX_CONCURRENT_RUNS',
  thread_overlap: 'two runs of one conversation were active at once',
  fifo: 'a run of a user started before a run of the same user accepted earlier',
  idempotency: 'one correlation_id of a user named two runs',
  foreign_event: "a socket received an event of another user's run",
  stream_order: "a socket's events of a run were not in strictly increasing seq order (a repeat, or backwards)",
  stream_gap: "a socket got a run's event without the one before it (a skipped seq), which no replay from the client's cursor can bring back",
  stream_mismatch: "an event a socket received is not the logged event with that seq (type, id or payload), or no such event was logged",
  stream_incomplete: 'a socket connected for the whole life of a run did not receive every event of it',
  client_incomplete: 'a client that followed a run, after catching up from its cursor, is missing events of it',
} as const;

export type ViolationKind = keyof typeof VIOLATION_KINDS;

export interface Violation {
  kind: ViolationKind;
  /** The run it is about (the report prints that run's history), when there is one. */
  runId: string | null;
  /** Other runs involved (the earlier run of a FIFO breach, the other run of an overlap). */
  otherRunIds?: string[];
  /** The socket or client it is about. */
  where?: string;
  message: string;
}

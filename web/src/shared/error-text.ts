/** A sentence for people for each error code (README, "Error codes"); the server's own message follows it. */
const SENTENCES: Record<string, string> = {
  BAD_REQUEST: 'The server could not accept this request.',
  UNAUTHORIZED: 'You are not signed in, or your token is no longer valid. Sign in again.',
  FORBIDDEN: 'This action is disabled on this server.',
  NOT_FOUND: 'This conversation or run does not exist (or belongs to someone else).',
  PAYLOAD_TOO_LARGE: 'The message is too long for this server.',
  THREAD_BUSY: 'This conversation is still answering. Wait for it, or stop it.',
  STORAGE_QUOTA_EXCEEDED: 'You have stored as much as this server allows. Delete conversations you no longer need, then send again.',
  RATE_LIMITED: 'Too many requests at once. Wait a moment and try again.',
  OVERLOADED: 'The server is too busy to take this now. Nothing was lost: try again in a moment.',
  SHUTTING_DOWN: 'The server is restarting. Try again in a moment.',
  AGENT_ERROR: 'The agent failed while answering.',
  WORKER_CRASHED: 'The worker running this answer crashed. Other conversations were not affected.',
  OUT_OF_MEMORY: 'The agent used more memory than it is allowed.',
  TIMEOUT: 'The agent took longer than it is allowed.',
  CANCELLED: 'The run was stopped.',
  LIMIT_EXCEEDED: 'The agent produced more output than it is allowed.',
  SINGLETON_AGENT: 'The agent is built wrongly (it reuses one instance for every run), so the server refused it.',
  INTERNAL: 'Something unexpected went wrong on the server.',
  NETWORK: 'The server could not be reached. Check your connection.',
  NO_ACK: 'The server did not confirm in time. The message may still arrive.',
};

export function sentenceFor(code: string): string {
  return SENTENCES[code] ?? 'Something went wrong.';
}

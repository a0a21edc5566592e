/** The server's wire types the pages read (README, "Wire contract"). */
export interface ErrorBody {
  code: string;
  message: string;
  retry_after_ms?: number;
}

export interface Envelope {
  type: string;
  event_id: string;
  seq: number;
  /** Set when the server merged partial_result events seq coalesced_from_seq..seq for a lagging socket. */
  coalesced_from_seq?: number;
  run_id: string;
  thread_id: string;
  user_id: string;
  agent_name: string;
  timestamp: string;
  payload: Record<string, unknown>;
}

export interface MessageView {
  id: number;
  thread_id: string;
  run_id: string | null;
  role: 'user' | 'assistant' | 'tool';
  content: string;
  status: 'complete' | 'interrupted';
  created_at: string;
}

export interface ThreadView {
  id: string;
  title: string | null;
  created_at: string;
  updated_at: string;
}

export interface AgentInfo {
  name: string;
  source?: string;
  description?: string;
}

export interface PageMeta {
  dev_login: boolean;
  llm_configured: boolean;
}

export const RUN_EVENT_TYPES = [
  'message_received',
  'run_queued',
  'agent_started',
  'run_restarted',
  'agent_thinking',
  'tool_executing',
  'tool_completed',
  'partial_result',
  'agent_completed',
] as const;

export function isEnvelope(value: unknown): value is Envelope {
  const v = value as Partial<Envelope> | null;
  return !!v && typeof v === 'object' && typeof v.type === 'string' && typeof v.run_id === 'string' && typeof v.seq === 'number' && typeof v.thread_id === 'string';
}

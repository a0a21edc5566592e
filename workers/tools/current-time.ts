/** Built-in tool `current_time`: the current date and time, in UTC and in an optional IANA time zone. */
import type { ToolDefinition } from '../llm/types.js';

export const currentTimeTool: ToolDefinition<{ time_zone?: string }> = {
  name: 'current_time',
  description: 'Returns the current date and time. Give an IANA time zone (like Europe/Paris or America/New_York) for local time; the default is UTC.',
  parameters: {
    type: 'object',
    properties: { time_zone: { type: 'string', minLength: 1, maxLength: 64, description: 'IANA time zone name, default UTC' } },
    additionalProperties: false,
  },
  handler: ({ time_zone }: { time_zone?: string }) => currentTime(new Date(), time_zone ?? 'UTC'),
};

export function currentTime(now: Date, timeZone: string) {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
      weekday: 'long',
      timeZoneName: 'longOffset',
    });
  } catch {
    throw new Error(`unknown time zone "${timeZone}"; use an IANA name such as UTC, Europe/Paris or America/New_York`);
  }
  const parts = format.formatToParts(now);
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? '';
  const offset = part('timeZoneName').replace(/^GMT/, '') || '+00:00';
  return {
    utc: now.toISOString(),
    time_zone: format.resolvedOptions().timeZone,
    local: `${part('year')}-${part('month')}-${part('day')} ${part('hour')}:${part('minute')}:${part('second')}`,
    weekday: part('weekday'),
    utc_offset: offset,
  };
}

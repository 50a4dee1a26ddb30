import type { Command } from 'commander';
import { listCalls, type Call } from '../calls/store.js';
import { parseDuration } from '../duration.js';
import { ErrorCode, VnumError } from '../errors.js';
import { validateSessionId } from '../session/sessions.js';
import type { Db } from '../store/db.js';
import { withDb } from './context.js';
import { parseLimit } from './options.js';
import { isoTime, printJson, printNotice, printTable, shortTime } from './output.js';

/** A router_status row newer than this counts as a running `vnum serve`. */
export const STATUS_FRESH_MS = 15_000;

/** The documented JSON shape of a call (README, "JSON"). */
export function callJson(call: Call) {
  return {
    id: call.id,
    uniqueid: call.uniqueid,
    session: call.session,
    caller: call.caller,
    state: call.state,
    startedAt: isoTime(call.startedAt),
    ringingAt: isoTime(call.ringingAt),
    answeredAt: isoTime(call.answeredAt),
    endedAt: isoTime(call.endedAt),
    lostAt: isoTime(call.lostAt),
    durationMs: call.durationMs,
    dialStatus: call.dialStatus,
    hangupCause: call.hangupCause,
    hangupCauseText: call.hangupCauseText,
    hangupRequestedAt: isoTime(call.hangupRequestedAt),
    hangupReason: call.hangupReason,
    via: call.via,
    recording:
      call.recording === null
        ? null
        : { path: call.recording.path, bytes: call.recording.bytes, deletedAt: isoTime(call.recording.deletedAt) },
  };
}

function recordingCell(call: Call): string | null {
  const r = call.recording;
  if (r === null) return null;
  if (r.deletedAt !== null) return `deleted ${shortTime(r.deletedAt)}`;
  return r.bytes === null ? r.path : `${r.path} (${r.bytes} B)`;
}

/**
 * `--since`: an ISO 8601 date or time (UTC unless it says otherwise), or a
 * duration back from now (`2h`), from 1970-01-01 on: before that no call
 * was ever logged, and every answer is a date vnum can print.
 */
export function parseSince(text: string, now: number): number {
  const trimmed = text.trim();
  if (/^\d{1,9}(ms|s|m|h|d)$/.test(trimmed)) {
    return now - parseDuration(trimmed, '--since', { max: Math.max(0, now) });
  }
  const date = /^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,3})?)?(Z|[+-]\d\d:?\d\d)?)?$/.exec(trimmed);
  if (date) {
    const iso = trimmed.replace(' ', 'T');
    const withZone = /T/.test(iso) && date[7] === undefined ? `${iso}Z` : iso;
    const at = Date.parse(withZone);
    // Date.parse rolls 2026-02-30 over into March and 24:00 into the next day: the fields must name a real time.
    const [year, month, day, hour, minute, second] = date.slice(1, 7).map((f) => Number(f ?? 0)) as [number, number, number, number, number, number];
    const calendar = new Date(Date.UTC(year, month - 1, day));
    const real = calendar.getUTCMonth() === month - 1 && calendar.getUTCDate() === day && hour <= 23 && minute <= 59 && second <= 59;
    if (Number.isFinite(at) && real && at >= 0) return at;
  }
  throw new VnumError(
    ErrorCode.InvalidArgument,
    `invalid --since "${text}": an ISO 8601 time from 1970 on (2026-11-25T09:00:00Z, 2026-11-25) or a duration back from now (90m, 2h, 7d)`,
  );
}

function duration(ms: number | null): string | null {
  return ms === null ? null : `${(ms / 1000).toFixed(1)}s`;
}

/** Whether some `vnum serve` on this database reports a live AMI login: without one, open calls may be stale. */
function amiWatching(db: Db, now: number): boolean {
  const rows = db.prepare<[number], { n: number }>(
    "SELECT count(*) AS n FROM router_status WHERE ami_state = 'logged-in' AND updated_at >= ?",
  ).get(now - STATUS_FRESH_MS);
  return (rows?.n ?? 0) > 0;
}

export function registerCalls(program: Command): void {
  program
    .command('calls')
    .description('the call log: every call the router bridged, newest first (needs vnum serve with AMI)')
    .option('--session <id>', 'only calls of this session')
    .option('--since <when>', 'only calls started since: ISO 8601 time, or a duration back from now (2h)')
    .option('--live', 'only calls in progress (routed, ringing, answered)')
    .option('--limit <n>', 'at most this many', '1000')
    .option('--json', 'JSON: an array of {"id","uniqueid","session","caller","state","startedAt",…} (see README)')
    .action((options: { session?: string; since?: string; live?: boolean; limit: string; json?: boolean }, command: Command) => {
      const now = Date.now();
      const limit = parseLimit(options.limit);
      const session = options.session === undefined ? undefined : validateSessionId(options.session);
      const since = options.since === undefined ? undefined : parseSince(options.since, now);
      const { calls, more, watching } = withDb(
        command,
        (db) => ({
          ...listCalls(db, { session, since, live: options.live, limit }),
          watching: amiWatching(db, now),
        }),
        'read',
      );
      if (more) printNotice(`showing the newest ${limit} calls; use --limit for more`);
      if (!watching && (options.live || calls.some((c) => c.state !== 'ended' && c.state !== 'lost'))) {
        printNotice('no vnum serve reports a live AMI connection: calls in progress may be out of date (see vnum health)');
      }
      if (options.json) {
        printJson(calls.map(callJson));
        return;
      }
      printTable(
        ['ID', 'SESSION', 'CALLER', 'STATE', 'STARTED', 'ANSWERED', 'ENDED', 'DURATION', 'DIAL', 'CAUSE', 'RECORDING'],
        calls.map((c) => [
          c.id,
          c.session,
          c.via === 'pin' ? `${c.caller} (PIN)` : c.caller,
          c.hangupReason ? `${c.state} (hung up: ${c.hangupReason})` : c.state,
          shortTime(c.startedAt),
          shortTime(c.answeredAt),
          shortTime(c.endedAt),
          duration(c.durationMs),
          c.dialStatus,
          c.hangupCause === null ? null : `${c.hangupCause}${c.hangupCauseText ? ` ${c.hangupCauseText}` : ''}`,
          recordingCell(c),
        ]),
      );
    });
}

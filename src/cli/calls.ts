import type { Command } from 'commander';
import { callJson } from '../calls/json.js';
import { amiWatching, listCalls, type Call } from '../calls/store.js';
import { ErrorCode, VnumError } from '../errors.js';
import { validateSessionId } from '../session/sessions.js';
import { withDb } from './context.js';
import { addAuthoritySetting, givenAuthority, onAuthority } from './authority.js';
import { parseLimit } from './options.js';
import { parseSince } from '../time.js';
import { printJson, printNotice, printTable, shortTime } from './output.js';

function recordingCell(call: Call): string | null {
  const r = call.recording;
  if (r === null) return null;
  if (r.deletedAt !== null) return `deleted ${shortTime(r.deletedAt)}`;
  return r.bytes === null ? r.path : `${r.path} (${r.bytes} B)`;
}

function duration(ms: number | null): string | null {
  return ms === null ? null : `${(ms / 1000).toFixed(1)}s`;
}

export function registerCalls(program: Command): void {
  addAuthoritySetting(program.command('calls'))
    .description('the call log: every call the router bridged, newest first (needs vnum serve with AMI); with --authority, every node\'s calls as shipped to the authority')
    .option('--session <id>', 'only calls of this session')
    .option('--since <when>', 'only calls started since: ISO 8601 time, or a duration back from now (2h)')
    .option('--live', 'only calls in progress (routed, ringing, answered)')
    .option('--limit <n>', 'at most this many', '1000')
    .option('--json', 'JSON: an array of {"id","uniqueid","session","caller","state","startedAt",…} (see README)')
    .action(async (options: { session?: string; since?: string; live?: boolean; limit: string; json?: boolean }, command: Command) => {
      const now = Date.now();
      const limit = parseLimit(options.limit);
      const session = options.session === undefined ? undefined : validateSessionId(options.session);
      const since = options.since === undefined ? undefined : parseSince(options.since, now);
      const filter = { session, since, live: options.live, limit };
      const target = givenAuthority(command);
      // On the authority: the nodes' call logs as shipped (ids are the authority's, unique across nodes).
      const { calls, more, watching } =
        target === undefined
          ? withDb(command, (db) => ({ ...listCalls(db, filter), watching: amiWatching(db, now) }), 'read')
          : await onAuthority(target, command, async (a) => {
              const page = await a.listCalls(filter, now);
              return { calls: page.calls, more: page.next !== undefined, watching: page.watching };
            });
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

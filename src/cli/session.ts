import type { Command } from 'commander';
import { ErrorCode, isVnumError, VnumError } from '../errors.js';
import { formatDuration, parseDuration } from '../duration.js';
import { normaliseNumber } from '../numbers/normalise.js';
import {
  createSession,
  DEFAULT_GRACE_MS,
  getSession,
  listSessions,
  MAX_GRACE_MS,
  MAX_TTL_MS,
  partyInput,
  IDLE_LIMITS,
  releaseSession,
  validateSessionId,
  type Session,
} from '../session/sessions.js';
import { sessionJson } from '../session/json.js';
import { SESSION_STATES, type SessionState } from '../session/state.js';
import { CALL_LIMITS, callSettingsFromText, type CallSettings, type CallSettingsText } from '../session/call-settings.js';
import { openCallCount, requestSessionHangup } from '../calls/store.js';
import { writeTransaction } from '../store/db.js';
import { awaitHangup } from '../calls/hangup.js';
import { ALLOWED_NUMBER_TYPES_OPTION, defaultCountry, numberPolicy, withDb } from './context.js';
import { parseLimit, pinGuessBoundOption } from './options.js';
import { addAuthoritySetting, givenAuthority, onAuthority } from './authority.js';
import { printJson, printLine, printNotice, printTable, shortTime } from './output.js';

/** `release --hangup --wait`: the hang-ups are vnum serve's every half second; minutes is plenty. */
const MAX_HANGUP_WAIT_MS = 10 * 60_000;

interface CallOptions extends CallSettingsText {
  idleTimeout?: string;
}

/** The call-shaping flags of \`session create\`, judged before anything is opened; errors name the flag. */
function callSettings(options: CallOptions): CallSettings | undefined {
  return callSettingsFromText(options, (field) => `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
}

function printSession(session: Session): void {
  printLine(`session ${session.id}: ${session.state}`);
  printLine(`  created ${shortTime(session.createdAt)}, expires ${shortTime(session.expiresAt) ?? 'never'}, ends ${shortTime(session.endsAt) ?? 'when released'}`);
  const pins = session.parties.every((p) => p.pin !== undefined);
  if (session.idleMs !== null) printLine(`  sliding: ends ${formatDuration(session.idleMs)} after its last call${session.expiresAt === null ? '' : ', at the latest when it expires'}`);
  const calls = Object.entries(session.callSettings).map(([k, v]) => (typeof v === 'number' ? `${k.replace(/Ms$/, '')}=${formatDuration(v)}` : `${k}=${String(v)}`));
  if (calls.length > 0) printLine(`  calls: ${calls.join(', ')}`);
  printTable(
    ['  PARTY', 'MASKED AS (what the other party sees and dials)', ...(pins ? ['PIN (shown once)'] : [])],
    session.parties.map((p) => [`  ${p.number}`, p.maskedAs, ...(pins ? [p.pin!] : [])]),
  );
}

export function registerSession(program: Command): void {
  const session = program.command('session').description('masked sessions between two real numbers');

  addAuthoritySetting(session.command('create'))
    .description('open a session; each party is lent the virtual number the other party sees and dials')
    .argument('<id>', 'your id for it, e.g. the order id (A-Z a-z 0-9 . _ : -, up to 64)')
    .argument('<first-party>', 'real number of the first party')
    .argument('<second-party>', 'real number of the second party')
    .option('--ttl <duration>', `end the session this long after creation, e.g. 2h, at most ${formatDuration(MAX_TTL_MS)}; with --idle-timeout, the hard maximum`)
    .option('--idle-timeout <duration>', `sliding TTL: end the session this long after its last call, ${formatDuration(IDLE_LIMITS.min)} to ${formatDuration(IDLE_LIMITS.max)}`)
    .option('--callee-announcement <sound>', 'an Asterisk sound played to the callee on answer, before the call connects (e.g. followme/call-from)')
    .option('--caller-announcement <class>', 'a music-on-hold class the caller hears while the callee rings (defined in musiconhold.conf)')
    .option('--call-limit <duration>', `the longest an answered call may last, 1s to ${formatDuration(CALL_LIMITS.callLimitMs.max)}`)
    .option('--limit-warning <duration>', 'play the warning sound to the caller this long before the call limit')
    .option('--ring-timeout <duration>', `how long the callee may ring, 1s to ${formatDuration(CALL_LIMITS.ringTimeoutMs.max)}`)
    .option('--record', "record this session's calls (with the consent notice vnum serve plays)")
    .option('--no-record', "never record this session's calls, whatever vnum serve's --record says")
    .option('--first-masked-as <number>', 'lend this virtual number to the first party (the only way to lend a reserved number)')
    .option('--second-masked-as <number>', 'lend this virtual number to the second party')
    .option('--country <XX>', 'default country for numbers without +')
    .option(...ALLOWED_NUMBER_TYPES_OPTION)
    .addOption(pinGuessBoundOption())
    .option('--json', 'JSON: the session with each party\'s "pin", plus "created": false when this request had already created it (no PINs then)')
    .action(
      async (
        id: string,
        first: string,
        second: string,
        options: { ttl?: string; firstMaskedAs?: string; secondMaskedAs?: string; pinGuessBound: number; json?: boolean } & CallOptions,
        command: Command,
      ) => {
        const policy = numberPolicy(command);
        const input = {
          id: validateSessionId(id),
          first: partyInput(first, options.firstMaskedAs, defaultCountry(command)),
          second: partyInput(second, options.secondMaskedAs, defaultCountry(command)),
          ttlMs: options.ttl === undefined ? undefined : parseDuration(options.ttl, 'TTL', { min: 1, max: MAX_TTL_MS }),
          idleMs: options.idleTimeout === undefined ? undefined : parseDuration(options.idleTimeout, '--idle-timeout', IDLE_LIMITS),
          callSettings: callSettings(options),
          now: Date.now(),
          policy,
          pinGuessBound: options.pinGuessBound,
        };
        const target = givenAuthority(command);
        let result;
        try {
          result = target === undefined ? withDb(command, (db) => createSession(db, input)) : await onAuthority(target, command, (a) => a.createSession(input));
        } catch (e) {
          // A retry of a released or ended session: scripts reading JSON see that session and the refusal.
          if (options.json && isVnumError(e, ErrorCode.SessionEnded)) {
            printJson({ ...sessionJson(e.details!.session as Session), created: false, error: { code: e.code, message: e.message } });
          }
          throw e;
        }
        const { session: created, created: isNew } = result;
        if (options.json) printJson({ ...sessionJson(created), created: isNew });
        else {
          if (!isNew) printLine(`session ${created.id} already exists for this request: unchanged`);
          printSession(created);
        }
      },
    );

  addAuthoritySetting(session.command('release'))
    .description('end a session after a grace period in which calls still connect')
    .argument('<id>', 'session id')
    .option('--grace <duration>', `how long calls still connect, e.g. 30m, at most ${formatDuration(MAX_GRACE_MS)}; 0s ends it now`, '30m')
    .option('--hangup', "also hang up its calls in progress now (vnum serve does it through AMI; with --authority, each node's vnum serve, as it receives the request)")
    .option('--wait <duration>', `with --hangup: how long to wait for those calls to end, at most ${formatDuration(MAX_HANGUP_WAIT_MS)} (not with --authority: the calls are on the nodes)`, '5s')
    .option('--json', 'JSON: the session, plus "changed" (and "hangup" with --hangup: "requestedAt", "requested", "ended"; the counts null with --authority)')
    .action(async (id: string, options: { grace: string; hangup?: boolean; wait: string; json?: boolean }, command: Command) => {
      validateSessionId(id);
      const graceMs = parseDuration(options.grace, 'grace', { max: MAX_GRACE_MS });
      const waitMs = parseDuration(options.wait, 'wait', { max: MAX_HANGUP_WAIT_MS });
      const now = Date.now();
      const target = givenAuthority(command);
      const hangup = options.hangup === true;
      // Cluster mode: the request goes on the session's row; each node's vnum serve applies it to its own calls.
      const { session: released, changed, hangup: request } =
        target !== undefined
          ? await onAuthority(target, command, (a) => a.releaseSession(id, graceMs, now, { hangup }))
          : withDb(
              command,
              (db) => {
                const result = releaseSession(db, id, graceMs, now);
                // Written for vnum serve, which hangs these calls up through its AMI connection.
                return { ...result, hangup: hangup ? { at: now, calls: writeTransaction(db, () => requestSessionHangup(db, id, now)) } : undefined };
              },
              'write',
            );
      const answer = request ? await awaitHangup(request, waitMs, (ids) => withDb(command, (db) => openCallCount(db, ids), 'read')) : undefined;
      if (options.json) {
        printJson({ ...sessionJson(released), changed, ...(answer ? { hangup: answer } : {}) });
      } else {
        if (!changed) printLine(`session ${id} is ${released.state}${released.endsAt ? ` (ends ${shortTime(released.endsAt)})` : ''}: unchanged`);
        else printLine(`session ${id} ${released.state === 'ended' ? 'ended' : `released: calls connect until ${shortTime(released.endsAt)}`}`);
        if (answer?.requested === null) {
          printLine(
            `hang-up requested at ${shortTime(request!.at)}: each PBX node's vnum serve hangs up its calls of this session that started by then, as its replica receives the request (how many: vnum calls --session ${id} on each node)`,
          );
        } else if (answer) {
          printLine(`calls in progress: ${answer.requested}, ended since: ${answer.ended}`);
        }
      }
      if (answer && answer.requested !== null && answer.ended < answer.requested) {
        printNotice(
          `${answer.requested - answer.ended} call(s) still up after ${options.wait}; vnum serve hangs them up once its AMI connection allows (see vnum health)`,
        );
      }
    });

  addAuthoritySetting(session.command('show'))
    .description('show one session')
    .argument('<id>', 'session id')
    .option('--json', 'JSON: {"id","state","expiresAt","parties":[{"number","maskedAs"},{"number","maskedAs"}],"createdAt","releasedAt","endsAt"}')
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      validateSessionId(id);
      const target = givenAuthority(command);
      const found =
        target === undefined ? withDb(command, (db) => getSession(db, id, Date.now()), 'read') : await onAuthority(target, command, (a) => a.getSession(id, Date.now()));
      if (options.json) printJson(sessionJson(found));
      else printSession(found);
    });

  addAuthoritySetting(session.command('list'))
    .description('list sessions, newest first')
    .option('--party <number>', 'only sessions with this party')
    .option('--state <state>', `only sessions in this state: ${SESSION_STATES.join(', ')}`)
    .option('--limit <n>', 'at most this many', '1000')
    .option('--country <XX>', 'default country for a number without +')
    .option('--json', 'JSON: an array of sessions as in "session show --json"')
    .action(async (options: { party?: string; state?: string; limit: string; json?: boolean }, command: Command) => {
      if (options.state !== undefined && !SESSION_STATES.includes(options.state as SessionState)) {
        throw new VnumError(ErrorCode.InvalidArgument, `unknown state "${options.state}": use ${SESSION_STATES.join(', ')}`);
      }
      const limit = parseLimit(options.limit);
      const partyNumber = options.party === undefined ? undefined : normaliseNumber(options.party, defaultCountry(command));
      const filter = { party: partyNumber, state: options.state as SessionState | undefined, limit, now: Date.now() };
      const target = givenAuthority(command);
      const { sessions, more } =
        target === undefined ? withDb(command, (db) => listSessions(db, filter), 'read') : await onAuthority(target, command, (a) => a.listSessions(filter));
      if (more) printNotice(`showing the newest ${limit} sessions; use --limit for more`);
      if (options.json) printJson(sessions.map(sessionJson));
      else {
        printTable(
          ['ID', 'STATE', 'FIRST PARTY', 'MASKED AS', 'SECOND PARTY', 'MASKED AS', 'ENDS'],
          sessions.map((s) => [s.id, s.state, s.parties[0].number, s.parties[0].maskedAs, s.parties[1].number, s.parties[1].maskedAs, shortTime(s.endsAt)]),
        );
      }
    });
}

export { DEFAULT_GRACE_MS };

/**
 * End to end, issue 14: sliding sessions, announcements, call limits, ring
 * timeouts and recording with consent, through the real Asterisk 22 running
 * dialplan/vnum.conf unchanged, routed by the built `vnum serve` (with AMI:
 * the call log), sipp as the carrier on both sides. Every call's messages,
 * both sides, are scanned for real numbers.
 *
 * Asterisk runs under umask 077, as the systemd drop-in in
 * deploy/systemd/asterisk-vnum-recordings.conf sets it, so recordings are
 * owner-only; the operator's musiconhold.conf defines the class the caller
 * hears while the callee rings.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAgiStub } from '../support/asterisk/agi-stub.js';
import { Asterisk } from '../support/asterisk/asterisk.js';
import { ports } from '../support/asterisk/paths.js';
import { VnumDb, type SessionJson } from '../support/cli.js';
import { findLeaks } from '../support/leaks.js';
import { repoRoot } from '../support/repo.js';
import { startServe } from '../support/serve.js';
import { describeMessages } from '../support/sip/messages.js';
import { callThrough as call, type CallOutcome, type UacResult } from '../support/sip/sipp.js';
import { e2eSuite } from '../support/suite.js';
import { sleep, waitFor } from '../support/wait.js';
import { stopWorld, type World as SharedWorld } from '../support/world.js';

const POOL = Array.from({ length: 10 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`);
// One pair per scenario: no session shares a party with another.
const PAIRS = {
  slide: ['+441134960101', '+441614960201'],
  announce: ['+441134960102', '+441614960202'],
  limit: ['+441134960103', '+441614960203'],
  ring: ['+441134960104', '+441614960204'],
  moh: ['+441134960105', '+441614960205'],
  record: ['+441134960106', '+441614960206'],
  plain: ['+441134960107', '+441614960207'],
} as const;
const REAL: string[] = Object.values(PAIRS).flat();

const SECRET = `e2e-${randomBytes(16).toString('hex')}`;
/** The recordings folder as Asterisk (in its root) sees it, and as vnum on the host does. */
const REC_IN_ROOT = '/var/tmp/vnum-e2e/rec';
const RETENTION_S = 8;
const CALL_TIMEOUT_MS = 60_000;

/** followme/call-from, "incoming call from": 2739 bytes of GSM at 1650 B/s. */
const CALLEE_SOUND = 'followme/call-from';

function managerConf(): string {
  const sample = readFileSync(path.join(repoRoot, 'dialplan/manager.sample.conf'), 'utf8');
  return sample.replace(/^secret\s*=.*$/m, `secret = ${SECRET}`);
}

/** The operator's music-on-hold class: a playlist of one stock prompt. */
const MUSICONHOLD = `[vnumwait]
mode = playlist
entry = /usr/share/asterisk/sounds/en_US_f_Allison/pls-hold-while-try
`;

interface CallJson {
  id: number;
  uniqueid: string;
  session: string;
  state: string;
  answeredAt: string | null;
  dialStatus: string | null;
  recording: { path: string; bytes: number | null; deletedAt: string | null } | null;
}

interface World extends SharedWorld {
  secretDir: string;
  recDir: string;
}

let world: World | undefined;

function soundLengthMs(name: string, root: string): number {
  const file = path.join(root, 'usr/share/asterisk/sounds/en_US_f_Allison', `${name}.gsm`);
  return Math.floor((statSync(file).size / 1650) * 1000);
}

function calls(db: VnumDb, session: string): CallJson[] {
  const r = db.run(['calls', '--json', '--session', session]);
  if (r.code !== 0) throw new Error(`vnum calls exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as CallJson[];
}

function detail(outcome: CallOutcome): string {
  return `caller received:\n${describeMessages(outcome.caller.received)}\ncallee received:\n${describeMessages(outcome.callee)}`;
}

function ownHeaders(caller: UacResult): string[] {
  const invite = caller.messages.find((m) => m.direction === 'sent' && m.method === 'INVITE');
  return [invite?.header('From'), invite?.header('To')].filter((v): v is string => v !== undefined);
}

/** No real number reached a side it is not theirs (the routing suite's leak scan). */
function expectNoLeaks(outcome: CallOutcome, callerReal: string, calleeReal: string | null): void {
  expect(findLeaks(outcome.callee, REAL.filter((n) => n !== calleeReal)), detail(outcome)).toEqual([]);
  expect(findLeaks(outcome.caller.received, REAL.filter((n) => n !== callerReal), ownHeaders(outcome.caller)), detail(outcome)).toEqual([]);
}

function expectBridged(outcome: CallOutcome, callerReal: string, calleeReal: string): void {
  expect(outcome.invites, detail(outcome)).toHaveLength(1);
  expect(outcome.caller.finalStatus, detail(outcome)).toBe(200);
  expectNoLeaks(outcome, callerReal, calleeReal);
}

/** The callee's 200 (sent by carrier-out) to the caller's 200 (received by carrier-in), sipp's clocks, ms. */
function connectGap(outcome: CallOutcome): number {
  const calleeOk = outcome.calleeMessages.find((m) => m.direction === 'sent' && m.status === 200 && m.cseqMethod === 'INVITE')?.at;
  const callerOk = outcome.caller.received.find((m) => m.status === 200 && m.cseqMethod === 'INVITE')?.at;
  if (calleeOk == null || callerOk == null) throw new Error(`no 200 on one side:\n${detail(outcome)}`);
  return callerOk - calleeOk;
}

function masked(session: SessionJson): { first: string; second: string } {
  return { first: session.parties[0].maskedAs, second: session.parties[1].maskedAs };
}

e2eSuite('sliding sessions, announcements, limits and recording through Asterisk 22', () => {
  beforeAll(async () => {
    const db = new VnumDb({ VNUM_DEFAULT_COUNTRY: 'GB' });
    db.poolAdd(POOL);
    const secretDir = mkdtempSync(path.join(tmpdir(), 'vnum-e2e-shape-'));
    writeFileSync(path.join(secretDir, 'secret'), `${SECRET}\n`, { mode: 0o600 });
    const asterisk = await Asterisk.start({
      managerConf: managerConf(),
      umask: '077',
      globals: { VNUM_RECORDING_DIR: REC_IN_ROOT },
      extraConfigs: { 'musiconhold.conf': MUSICONHOLD },
    });
    // The operator's folder: Asterisk's (vnum, root here, reads and deletes through the folder).
    const recDir = path.join(asterisk.root, REC_IN_ROOT.slice(1));
    mkdirSync(recDir, { recursive: true, mode: 0o700 });
    const asteriskUser = readFileSync(path.join(asterisk.root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('asterisk:'))!.split(':');
    chownSync(recDir, Number(asteriskUser[2]), Number(asteriskUser[3]));
    const router = await startServe({
      db: db.file,
      port: ports.router,
      env: { VNUM_AMI_USER: 'vnum', VNUM_AMI_SECRET_FILE: path.join(secretDir, 'secret') },
      args: ['--recordings-dir', recDir, '--recording-notice', 'one-moment-please', '--recording-retention', `${RETENTION_S}s`],
    });
    world = { asterisk, db, router, secretDir, recDir };
    await waitFor('AMI logged in', () => {
      const r = db.run(['health', '--json', '--host', '127.0.0.1', '--port', String(ports.router)]);
      return (JSON.parse(r.stdout) as { ami: { state: string } }).ami.state === 'logged-in';
    }, 20_000);
  }, 120_000);
  afterAll(async () => stopWorld(world, () => rmSync(world?.secretDir ?? '/nonexistent', { recursive: true, force: true })));
  afterEach(async () => {
    await world?.asterisk.waitIdle();
  });

  it('a sliding session stays alive while calls continue, and ends after inactivity', async () => {
    const w = world!;
    const [a, d] = PAIRS.slide;
    const session = w.db.createSession('slide-1', a, d, ['--idle-timeout', '5s']);
    const createdAt = Date.now();
    const { second: dMasked } = masked(session);
    // Calls 3 s apart: each pushes the end 5 s past itself.
    for (let i = 0; i < 3; i++) {
      const outcome = await call(w.asterisk, { dialled: dMasked, callerUser: a, holdMs: 300 });
      expectBridged(outcome, a, d);
      await sleep(3_000);
    }
    // Past the fixed end it would have had (created + 5 s), it still bridges.
    expect(Date.now() - createdAt).toBeGreaterThan(9_000);
    const alive = await call(w.asterisk, { dialled: dMasked, callerUser: a, holdMs: 300 });
    expectBridged(alive, a, d);
    const shown = JSON.parse(w.db.run(['session', 'show', 'slide-1', '--json']).stdout) as { endsAt: string; idleTimeoutMs: number };
    expect(shown.idleTimeoutMs).toBe(5_000);
    expect(Date.parse(shown.endsAt) - createdAt).toBeGreaterThan(10_000);
    // Then nobody calls: after 5 s of silence the session has ended, and the call is refused.
    await sleep(Date.parse(shown.endsAt) - Date.now() + 500);
    const ended = await call(w.asterisk, { dialled: dMasked, callerUser: a, holdMs: 300 });
    expect(ended.callee, detail(ended)).toEqual([]);
    expect(ended.caller.finalStatus, detail(ended)).toBe(404);
    expectNoLeaks(ended, a, null);
    expect(JSON.parse(w.db.run(['session', 'show', 'slide-1', '--json']).stdout).state).toBe('ended');
  }, CALL_TIMEOUT_MS);

  it('the callee hears the announcement before the call connects: the caller is answered only after it', async () => {
    const w = world!;
    const promptMs = soundLengthMs(CALLEE_SOUND, w.asterisk.root);
    const [pa, pd] = PAIRS.plain;
    const plain = w.db.createSession('plain-1', pa, pd);
    const baseline = await call(w.asterisk, { dialled: masked(plain).second, callerUser: pa, holdMs: 300 });
    expectBridged(baseline, pa, pd);
    const [a, d] = PAIRS.announce;
    const session = w.db.createSession('announce-1', a, d, ['--callee-announcement', CALLEE_SOUND]);
    const outcome = await call(w.asterisk, { dialled: masked(session).second, callerUser: a, holdMs: 300 });
    expectBridged(outcome, a, d);
    const gap = connectGap(outcome);
    console.info(`callee-200 -> caller-200: ${gap} ms with a ${promptMs} ms announcement; ${connectGap(baseline)} ms without`);
    expect(connectGap(baseline)).toBeLessThan(500);
    expect(gap).toBeGreaterThanOrEqual(promptMs - 50);
    expect(w.asterisk.log()).toMatch(new RegExp(`Playing '${CALLEE_SOUND}\\.`));
  }, CALL_TIMEOUT_MS);

  it('the call is cut at its limit, after the warning sound', async () => {
    const w = world!;
    const [a, d] = PAIRS.limit;
    const session = w.db.createSession('limit-1', a, d, ['--call-limit', '4s', '--limit-warning', '2s']);
    const logBefore = w.asterisk.log().length;
    const outcome = await call(w.asterisk, { dialled: masked(session).second, callerUser: a, holdMs: 15_000, timeoutS: 30 });
    expectBridged(outcome, a, d);
    const answered = outcome.caller.received.find((m) => m.status === 200 && m.cseqMethod === 'INVITE')!.at!;
    const bye = outcome.caller.received.find((m) => m.kind === 'request' && m.method === 'BYE');
    expect(bye, detail(outcome)).toBeDefined();
    const heldMs = bye!.at! - answered;
    console.info(`answer -> Asterisk's BYE: ${heldMs} ms for a 4 s limit`);
    expect(heldMs).toBeGreaterThanOrEqual(3_900);
    expect(heldMs).toBeLessThan(5_500);
    const log = w.asterisk.log().slice(logBefore);
    expect(log).toMatch(/Playing 'beep\./);
    expect(log).not.toMatch(/Could not set duration limits|Attempted to set limits/);
  }, CALL_TIMEOUT_MS);

  it('the callee rings at most the ring timeout', async () => {
    const w = world!;
    const [a, d] = PAIRS.ring;
    const session = w.db.createSession('ring-1', a, d, ['--ring-timeout', '2s']);
    const outcome = await call(w.asterisk, { dialled: masked(session).second, callerUser: a, holdMs: 300 }, { ringMs: 8_000 });
    expect(outcome.invites, detail(outcome)).toHaveLength(1);
    expect(outcome.caller.finalStatus, detail(outcome)).toBe(480);
    const sent = outcome.caller.messages.find((m) => m.direction === 'sent' && m.method === 'INVITE')!.at!;
    const final = outcome.caller.received.find((m) => m.status === 480)!.at!;
    console.info(`INVITE -> 480: ${final - sent} ms for a 2 s ring timeout`);
    expect(final - sent).toBeGreaterThanOrEqual(2_000);
    expect(final - sent).toBeLessThan(4_000);
    expectNoLeaks(outcome, a, d);
  }, CALL_TIMEOUT_MS);

  it('the caller hears the operator\'s class while the callee rings (early media), then is connected', async () => {
    const w = world!;
    const [a, d] = PAIRS.moh;
    const session = w.db.createSession('moh-1', a, d, ['--caller-announcement', 'vnumwait']);
    const logBefore = w.asterisk.log().length;
    const outcome = await call(w.asterisk, { dialled: masked(session).second, callerUser: a, holdMs: 300 }, { ringMs: 2_000 });
    expectBridged(outcome, a, d);
    const progress = outcome.caller.received.find((m) => m.status === 183);
    expect(progress?.header('Content-Type'), detail(outcome)).toBe('application/sdp');
    expect(w.asterisk.log().slice(logBefore)).toMatch(/Started music on hold, class 'vnumwait'/);
  }, CALL_TIMEOUT_MS);

  it('a recorded call: consent first, an owner-only file named by the call, path and size in the call log, deleted after retention', async () => {
    const w = world!;
    const [a, d] = PAIRS.record;
    const session = w.db.createSession('record-1', a, d, ['--record']);
    const outcome = await call(w.asterisk, { dialled: masked(session).second, callerUser: a, holdMs: 2_500 }, { audio: true });
    expectBridged(outcome, a, d);
    // The consent notice came as early media before the callee was dialled.
    const progress = outcome.caller.received.find((m) => m.status === 183);
    expect(progress, detail(outcome)).toBeDefined();
    const calleeInvite = outcome.invites[0]!.at!;
    expect(progress!.at!).toBeLessThan(calleeInvite);
    expect(calleeInvite - progress!.at!).toBeGreaterThanOrEqual(soundLengthMs('one-moment-please', w.asterisk.root) - 100);

    const logged = await waitFor('the recording measured', () => {
      const row = calls(w.db, 'record-1')[0];
      return row?.recording?.bytes != null ? row : undefined;
    }, 15_000);
    const file = logged.recording!.path;
    expect(path.dirname(file)).toBe(w.recDir);
    expect(path.basename(file)).toBe(`${logged.uniqueid}.wav`);
    const st = statSync(file);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(logged.recording!.bytes);
    expect(st.size).toBeGreaterThan(8_000);
    const bytes = readFileSync(file);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('RIFF');
    // Sound, not silence: the callee's speech is in it (16-bit samples after the 44-byte header).
    const samples = new Int16Array(bytes.buffer.slice(bytes.byteOffset + 44, bytes.byteOffset + bytes.length - (bytes.length % 2)));
    expect(samples.filter((v) => Math.abs(v) > 1000).length).toBeGreaterThan(samples.length / 10);
    for (const n of REAL) {
      expect(path.basename(file)).not.toContain(n.slice(1));
      expect(bytes.includes(Buffer.from(n.slice(1), 'latin1'))).toBe(false);
    }

    // Not answered: no recording, none in the call log.
    const busy = await call(w.asterisk, { dialled: masked(session).second, callerUser: a, holdMs: 300 }, { rejectWith: 486 });
    expect(busy.caller.finalStatus, detail(busy)).toBe(486);
    expectNoLeaks(busy, a, d);
    const unanswered = await waitFor('the unanswered call settled', () => {
      const row = calls(w.db, 'record-1').find((c) => c.id !== logged.id && c.state === 'ended');
      return row && row.recording === null ? row : undefined;
    }, 15_000);
    expect(existsSync(path.join(w.recDir, `${unanswered.uniqueid}.wav`))).toBe(false);
    expect(readdirSync(w.recDir)).toEqual([path.basename(file)]);

    // After the retention period vnum serve deletes it, and says so.
    const deleted = await waitFor('the recording deleted', () => {
      const row = calls(w.db, 'record-1').find((c) => c.id === logged.id);
      return row?.recording?.deletedAt ? row : undefined;
    }, (RETENTION_S + 10) * 1000);
    expect(existsSync(file)).toBe(false);
    expect(deleted.recording!.path).toBe(file);
    // The deletion is logged (the line may reach us a moment after the row).
    await waitFor('the deletion logged', () => w.router.lines().some((l) => l.includes('recording deleted') && l.includes(path.basename(file))), 5_000);
  }, CALL_TIMEOUT_MS);

  // Last: it stops the router, to put a hostile one on its port.
  it('call-shaping values the real router never sends (metacharacters, bounds, recording without consent): the call fails closed, nobody dialled', async () => {
    const w = world!;
    await w.router.stop();
    const [a, d] = PAIRS.plain;
    const bridge = { VNUM_STATUS: 'BRIDGE', VNUM_TARGET: d, VNUM_CLI: POOL[0]!, VNUM_SESSION: 'plain-1' };
    const hostile: Array<Record<string, string>> = [
      { VNUM_CALLEE_SOUND: 'beep)U(vnum-callee' },
      { VNUM_CALLEE_SOUND: 'beep&tt-monkeys' },
      { VNUM_CALLEE_SOUND: '../../../etc/passwd' },
      { VNUM_CALLER_MOH: 'a b' },
      { VNUM_LIMIT_WARNING_SOUND: '${CALLERID(num)}', VNUM_LIMIT_WARNING_S: '1' },
      { VNUM_RING_TIMEOUT_S: '-5' },
      { VNUM_RING_TIMEOUT_S: '0' },
      { VNUM_CALL_LIMIT_S: '99999999' },
      { VNUM_RECORD: '1' },
      { VNUM_RECORD: '2', VNUM_CONSENT_SOUND: 'beep' },
    ];
    for (const extra of hostile) {
      const stub = await startAgiStub(() => ({ kind: 'mset', vars: { ...bridge, ...extra } }));
      try {
        const outcome = await call(w.asterisk, { dialled: POOL[1]!, callerUser: a, holdMs: 300 });
        expect(stub.sessions, JSON.stringify(extra)).toHaveLength(1);
        expect(outcome.callee, `${JSON.stringify(extra)}\n${detail(outcome)}`).toEqual([]);
        expect(outcome.caller.finalStatus, JSON.stringify(extra)).toBe(503);
        expectNoLeaks(outcome, a, null);
      } finally {
        await stub.close();
      }
    }
  }, 120_000);
});

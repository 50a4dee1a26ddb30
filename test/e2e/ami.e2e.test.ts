/**
 * End to end over AMI: the product's `vnum serve` logged in to a real
 * Asterisk 22 with the shipped dialplan/manager.sample.conf (only the secret
 * changed), real SIP calls from sipp, and the call log, live control and
 * health read back through the built CLI.
 *
 *   carrier-in (sipp UAC) --> Asterisk --FastAGI--> vnum serve --AMI--> Asterisk
 *                                      '--> carrier-out (sipp UAS)
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Asterisk } from '../support/asterisk/asterisk.js';
import { ports } from '../support/asterisk/paths.js';
import { VnumDb, type SessionJson } from '../support/cli.js';
import { numberPattern } from '../support/leaks.js';
import { rawAmi } from '../support/raw-ami.js';
import { repoRoot } from '../support/repo.js';
import { startServe } from '../support/serve.js';
import { callThrough as call, placeCall, startUas, type UacResult } from '../support/sip/sipp.js';
import { e2eSuite } from '../support/suite.js';
import { stopWorld, type World as SharedWorld } from '../support/world.js';
import { sleep, waitFor } from '../support/wait.js';

const POOL = Array.from({ length: 10 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`);
const ALICE = '+441134960123';
const DEV = '+441614960456';
const ZOE = '+441174960789';
const BOB = '+441184960555';
const STRANGER = '+441314960999';
const REAL = [ALICE, DEV, ZOE, BOB, STRANGER];

const SECRET = `e2e-${randomBytes(16).toString('hex')}`;

/** The shipped sample, as an operator installs it: only the secret is theirs. */
function managerConf(): string {
  const sample = readFileSync(path.join(repoRoot, 'dialplan/manager.sample.conf'), 'utf8');
  const conf = sample.replace(/^secret\s*=.*$/m, `secret = ${SECRET}`);
  if (conf === sample) throw new Error('dialplan/manager.sample.conf has no "secret =" line to set');
  return conf;
}

interface CallJson {
  id: number;
  uniqueid: string;
  session: string;
  caller: 'first' | 'second';
  state: string;
  startedAt: string;
  ringingAt: string | null;
  answeredAt: string | null;
  endedAt: string | null;
  lostAt: string | null;
  durationMs: number | null;
  dialStatus: string | null;
  hangupCause: number | null;
  hangupCauseText: string | null;
  hangupRequestedAt: string | null;
  hangupReason: string | null;
}

interface World extends SharedWorld {
  order: SessionJson;
  secretDir: string;
}

function calls(db: VnumDb, args: string[] = []): CallJson[] {
  const r = db.run(['calls', '--json', ...args]);
  if (r.code !== 0) throw new Error(`vnum calls exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as CallJson[];
}

function health(db: VnumDb): { code: number | null; report: { healthy: boolean; ami: { ok: boolean; state: string; error: string | null }; asterisk: { version: string | null } } } {
  const r = db.run(['health', '--json', '--host', '127.0.0.1', '--port', '4573']);
  return { code: r.code, report: JSON.parse(r.stdout) };
}

async function amiLoggedIn(db: VnumDb, timeoutMs = 15_000): Promise<void> {
  await waitFor('vnum health: AMI logged in', () => health(db).report.ami.state === 'logged-in', timeoutMs);
}

async function startWorld(): Promise<World> {
  const db = new VnumDb({ VNUM_DEFAULT_COUNTRY: 'GB' });
  db.poolAdd(POOL);
  const order = db.createSession('order-alice', ALICE, DEV);
  const secretDir = mkdtempSync(path.join(tmpdir(), 'vnum-e2e-ami-'));
  writeFileSync(path.join(secretDir, 'secret'), `${SECRET}\n`, { mode: 0o600 });
  const asterisk = await Asterisk.start({ managerConf: managerConf() });
  const router = await startServe({
    db: db.file,
    port: ports.router,
    env: { VNUM_AMI_USER: 'vnum', VNUM_AMI_SECRET_FILE: path.join(secretDir, 'secret') },
  });
  await amiLoggedIn(db);
  return { asterisk, db, router, order, secretDir };
}


/** sipp's own clock: when the caller got the 200 OK, and when the BYE went or came. */
function sippTalk(caller: UacResult): { answeredAt: number; endedAt: number; talkMs: number } {
  const ok = caller.received.find((m) => m.status === 200 && m.cseqMethod === 'INVITE');
  const bye = caller.messages.find((m) => m.method === 'BYE');
  if (!ok?.at || !bye?.at) throw new Error('sipp saw no answer or no BYE');
  return { answeredAt: ok.at, endedAt: bye.at, talkMs: bye.at - ok.at };
}

/** The real numbers that appear in `text`, in any formatting (their last 9 digits). */
function numbersIn(text: string): string[] {
  return REAL.filter((n) => numberPattern(n).test(text));
}

const ms = (iso: string | null): number => (iso === null ? NaN : Date.parse(iso));

e2eSuite('the call log, live control and health over AMI (Asterisk 22, manager.sample.conf)', () => {
  let world: World | undefined;

  beforeAll(async () => {
    world = await startWorld();
  });
  afterAll(async () => {
    if (process.env.VNUM_E2E_SHOW_LOG) console.log(world?.router.lines().join('\n'));
    await stopWorld(world, () => world && rmSync(world.secretDir, { recursive: true, force: true }));
  });
  afterEach(async () => world?.asterisk.waitIdle());

  it('the sample\'s AMI user is what vnum serve logs in as: read call, write call,reporting, from loopback', () => {
    const user = world!.asterisk.cli('manager show user vnum');
    expect(user).toMatch(/read perm:\s*call\s*$/m);
    expect(user).toMatch(/write perm:\s*call,reporting\s*$/m);
    expect(world!.asterisk.cli('manager show connected')).toMatch(/vnum\s+127\.0\.0\.1/);
  });

  it('what the vnum user gets from Asterisk 22: Events honoured, the second Login unread, nothing beyond its classes, only the three events', async () => {
    const w = world!;
    const ami = await rawAmi();
    try {
      const reply = async (id: string) => waitFor(`AMI reply ${id}`, () => ami.messages.find((m) => m.ActionID === id), 5_000);
      ami.send(['Action: Login', 'ActionID: 1', 'Username: vnum', `Secret: ${SECRET}`, 'Events: call']);
      expect(await reply('1')).toMatchObject({ Response: 'Success', Message: 'Authentication accepted' });
      // What asterisk-manager's login() sends afterwards, to open its own gate.
      ami.send(['Action: login', 'ActionID: 2', 'Username: ', 'Secret: ', 'Event: off']);
      expect(await reply('2')).toMatchObject({ Response: 'Success', Message: 'Already authenticated' });
      for (const [id, action] of [['3', 'Originate'], ['4', 'Command'], ['5', 'Filter'], ['6', 'Setvar']] as const) {
        ami.send([`Action: ${action}`, `ActionID: ${id}`, 'Channel: Local/1@default', 'Command: core show version', 'Operation: Add', 'Filter: Event: VarSet', 'Variable: X', 'Value: 1']);
        const answer = await reply(id);
        if (action === 'Setvar') expect(answer.Response).toBe('Error'); // write=call allows it; there is no such channel
        else expect(answer).toMatchObject({ Response: 'Error', Message: 'Permission denied' });
      }
      const far = await startUas();
      try {
        await placeCall({ dialled: w.order.parties[1].maskedAs, callerUser: ALICE, holdMs: 300 });
        await w.asterisk.waitIdle();
      } finally {
        await far.stop();
      }
      await waitFor('the Hangup events', () => ami.messages.filter((m) => m.Event === 'Hangup').length >= 2);
      const names = new Set(ami.messages.filter((m) => m.Event !== undefined).map((m) => m.Event));
      expect([...names].sort()).toEqual(['DialBegin', 'DialEnd', 'Hangup']);
      expect(ami.messages.filter((m) => m.Event !== undefined).every((m) => /^\d+\.\d{6}$/.test(m.Timestamp ?? ''))).toBe(true);
    } finally {
      ami.close();
    }
  }, 40_000);

  it('health: router answering its FastAGI probe, database readable, AMI logged in, the Asterisk version; exit 0', () => {
    const { code, report } = health(world!.db);
    expect(report).toMatchObject({ healthy: true, router: { ok: true, error: null }, ami: { ok: true, state: 'logged-in' } });
    expect(report.asterisk.version).toMatch(/^22\./);
    expect(code).toBe(0);
  });

  it('Asterisk itself can probe the router: AGI(agi://127.0.0.1:4573/vnum-health) sets VNUM_HEALTH=OK and routes nothing', async () => {
    const w = world!;
    const before = calls(w.db).length;
    const context = 'vnum-e2e-probe';
    // A context of the test's own (the CLI splits on blanks: none in the data),
    // run on a Local channel by `channel originate` (res_clioriginate, loaded for this).
    w.asterisk.cli(`dialplan add extension s,1,AGI(agi://127.0.0.1:4573/vnum-health) into ${context}`);
    w.asterisk.cli(`dialplan add extension s,2,Log(NOTICE,${context}:VNUM_HEALTH=\${VNUM_HEALTH}:AGISTATUS=\${AGISTATUS}) into ${context}`);
    expect(w.asterisk.cli(`dialplan show ${context}`)).toMatch(/2 priorities/);
    w.asterisk.cli('module load res_clioriginate.so');
    w.asterisk.cli(`channel originate Local/s@${context} application Wait 1`);
    const line = await waitFor('the probe\'s log line', () => w.asterisk.log().split('\n').find((l) => l.includes(`${context}:VNUM_HEALTH=`)), 10_000);
    expect(line).toContain(`${context}:VNUM_HEALTH=OK:AGISTATUS=SUCCESS`);
    await w.asterisk.waitIdle();
    expect(calls(w.db)).toHaveLength(before);
    expect(w.router.lines().join('\n')).not.toMatch(/"level":(40|50)[^\n]*vnum-health/);
  });

  it('an answered call the caller ends: in the log with ANSWER, cause 16, and sipp\'s duration within a second', async () => {
    const w = world!;
    const before = calls(w.db).length;
    const outcome = await call(w.asterisk, { dialled: w.order.parties[1].maskedAs, callerUser: ALICE, holdMs: 2_500 }, { ringMs: 400 });
    expect(outcome.caller.finalStatus).toBe(200);
    const sipp = sippTalk(outcome.caller);
    const logged = await waitFor('the call to end in the log', () => {
      const all = calls(w.db);
      return all.length === before + 1 && all[0]!.state === 'ended' ? all[0] : undefined;
    });
    expect(logged).toMatchObject({
      session: 'order-alice',
      caller: 'first',
      state: 'ended',
      dialStatus: 'ANSWER',
      hangupCause: 16,
      hangupCauseText: 'Normal Clearing',
      hangupReason: null,
      lostAt: null,
    });
    expect(Math.abs(logged.durationMs! - sipp.talkMs)).toBeLessThan(1_000);
    // Ringing before the answer, the answer after the callee's 400 ms of ringing.
    expect(ms(logged.startedAt)).toBeLessThanOrEqual(ms(logged.ringingAt));
    expect(ms(logged.answeredAt) - ms(logged.ringingAt)).toBeGreaterThanOrEqual(300);
    expect(ms(logged.endedAt) - ms(logged.answeredAt)).toBe(logged.durationMs);
    // Wall clock: sipp's and Asterisk's are the same machine's.
    expect(Math.abs(ms(logged.answeredAt) - sipp.answeredAt)).toBeLessThan(1_000);
    expect(Math.abs(ms(logged.endedAt) - sipp.endedAt)).toBeLessThan(1_000);
    // Filters.
    expect(calls(w.db, ['--session', 'order-alice']).map((c) => c.id)).toContain(logged.id);
    expect(calls(w.db, ['--since', '1h']).map((c) => c.id)).toContain(logged.id);
    expect(calls(w.db, ['--since', new Date(Date.now() + 60_000).toISOString()])).toEqual([]);
    expect(calls(w.db, ['--live'])).toEqual([]);
  }, 40_000);

  it('the callee ends the call: the other party is the caller, and the cause is a normal clearing', async () => {
    const w = world!;
    const outcome = await call(w.asterisk, { dialled: w.order.parties[0].maskedAs, callerUser: DEV, holdMs: 15_000 }, { hangupAfterMs: 1_500 });
    expect(outcome.caller.finalStatus).toBe(200);
    expect(outcome.caller.received.some((m) => m.method === 'BYE')).toBe(true);
    const sipp = sippTalk(outcome.caller);
    const logged = await waitFor('the call to end', () => {
      const c = calls(w.db, ['--session', 'order-alice'])[0];
      return c?.caller === 'second' && c.state === 'ended' ? c : undefined;
    });
    expect(logged).toMatchObject({ dialStatus: 'ANSWER', hangupCause: 16 });
    expect(Math.abs(logged.durationMs! - sipp.talkMs)).toBeLessThan(1_000);
  }, 40_000);

  it('a busy callee: BUSY, cause 17, never answered, no duration', async () => {
    const w = world!;
    const outcome = await call(w.asterisk, { dialled: w.order.parties[1].maskedAs, callerUser: ALICE }, { rejectWith: 486 });
    expect(outcome.caller.finalStatus).toBe(486);
    const logged = await waitFor('the busy call', () => {
      const c = calls(w.db)[0];
      return c?.dialStatus === 'BUSY' && c.state === 'ended' ? c : undefined;
    });
    expect(logged).toMatchObject({ caller: 'first', hangupCause: 17, answeredAt: null, durationMs: null });
  }, 40_000);

  it('a refused call (no session) is not a call of any session: nothing logged', async () => {
    const w = world!;
    const before = calls(w.db).length;
    const outcome = await call(w.asterisk, { dialled: w.order.parties[1].maskedAs, callerUser: STRANGER });
    expect(outcome.caller.finalStatus).toBe(404);
    await sleep(500);
    expect(calls(w.db).length).toBe(before);
  }, 40_000);

  it('release --hangup ends a live call: both carriers receive a BYE, the log says why', async () => {
    const w = world!;
    const session = w.db.createSession('order-release', BOB, ZOE);
    const far = await startUas();
    try {
      const started = Date.now();
      const caller = placeCall({ dialled: session.parties[1].maskedAs, callerUser: BOB, holdMs: 25_000, timeoutS: 40 });
      const live = await waitFor('the call to be answered', () => calls(w.db, ['--live', '--session', 'order-release']).find((c) => c.state === 'answered'));
      expect(live.caller).toBe('first');
      const r = w.db.run(['session', 'release', 'order-release', '--hangup', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ id: 'order-release', state: 'grace', changed: true, hangup: { requested: 1, ended: 1 } });
      const result = await caller;
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result.received.some((m) => m.method === 'BYE')).toBe(true);
      await w.asterisk.waitIdle();
      expect(far.received().some((m) => m.method === 'BYE')).toBe(true);
      const ended = calls(w.db, ['--session', 'order-release'])[0]!;
      expect(ended).toMatchObject({ state: 'ended', dialStatus: 'ANSWER', hangupReason: 'release', hangupCause: 16 });
      expect(ended.hangupRequestedAt).not.toBeNull();
    } finally {
      await far.stop();
    }
  }, 60_000);

  it('a session reaching its end hangs up its live call', async () => {
    const w = world!;
    const created = JSON.parse(w.db.run(['session', 'create', 'order-ttl', ZOE, ALICE, '--ttl', '5s', '--json']).stdout) as SessionJson & { expiresAt: string };
    const far = await startUas();
    try {
      const result = await placeCall({ dialled: created.parties[1].maskedAs, callerUser: ZOE, holdMs: 25_000, timeoutS: 40 });
      expect(result.received.some((m) => m.method === 'BYE')).toBe(true);
      const bye = result.received.find((m) => m.method === 'BYE')!;
      // Within a second and a half of the session's end (the watcher looks twice a second).
      expect(bye.at! - Date.parse(created.expiresAt)).toBeGreaterThanOrEqual(-100);
      expect(bye.at! - Date.parse(created.expiresAt)).toBeLessThan(1_500);
      await w.asterisk.waitIdle();
      const ended = await waitFor('the log to show the end', () => {
        const c = calls(w.db, ['--session', 'order-ttl'])[0];
        return c?.state === 'ended' ? c : undefined;
      });
      expect(ended).toMatchObject({ hangupReason: 'session-ended', dialStatus: 'ANSWER' });
    } finally {
      await far.stop();
    }
  }, 60_000);

  it('Asterisk restarts: vnum serve logs in again by itself, health follows, and the log keeps filling', async () => {
    const w = world!;
    const restarted = w.asterisk.restart({ downMs: 3_000 });
    // While Asterisk is down: unhealthy, exit 1, AMI not logged in.
    const down = await waitFor('health to see AMI down', () => {
      const h = health(w.db);
      return h.report.ami.state !== 'logged-in' ? h : undefined;
    });
    expect(down.code).toBe(1);
    expect(down.report).toMatchObject({ healthy: false, ami: { ok: false } });
    await restarted;
    await amiLoggedIn(w.db, 20_000);
    const before = calls(w.db).length;
    const outcome = await call(w.asterisk, { dialled: w.order.parties[1].maskedAs, callerUser: ALICE, holdMs: 1_200 });
    expect(outcome.caller.finalStatus).toBe(200);
    const sipp = sippTalk(outcome.caller);
    const logged = await waitFor('the call after the restart', () => {
      const all = calls(w.db);
      return all.length === before + 1 && all[0]!.state === 'ended' ? all[0] : undefined;
    });
    expect(logged).toMatchObject({ dialStatus: 'ANSWER', hangupCause: 16, caller: 'first' });
    expect(Math.abs(logged.durationMs! - sipp.talkMs)).toBeLessThan(1_000);
    const log = w.router.lines().join('\n');
    expect(log).toMatch(/"AMI connection lost"/);
    expect(log.match(/"AMI logged in"/g)?.length).toBeGreaterThanOrEqual(2);
  }, 90_000);

  it('no real number in anything vnum serve logged, nor in the call log', () => {
    const w = world!;
    expect(numbersIn(w.router.lines().join('\n'))).toEqual([]);
    expect(numbersIn(w.db.run(['calls', '--json']).stdout)).toEqual([]);
    expect(numbersIn(w.db.run(['calls']).stdout)).toEqual([]);
  });
});

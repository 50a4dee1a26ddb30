/**
 * The built CLI for the AMI features: `vnum serve` with AMI against a fake
 * AMI (FastAGI calls from a fake Asterisk), `vnum calls`, `vnum health`,
 * `vnum session release --hangup`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { recordRoutedCall, writeRouterStatus } from '../../src/calls/store.js';
import { openDb } from '../../src/store/db.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { VNUM_BIN, vnum } from '../support/cli.js';
import { placeCall } from '../support/fake-asterisk.js';
import { until } from '../support/wait.js';
import { FakeAmi } from '../support/fake-ami.js';
import { freePort } from '../support/net.js';
import { startServe, type Serve } from '../support/serve.js';

const A = '+447911000001';
const D = '+447911000002';
const CALL_FIELDS = [
  'id', 'uniqueid', 'session', 'caller', 'state', 'startedAt', 'ringingAt', 'answeredAt', 'endedAt', 'lostAt',
  'durationMs', 'dialStatus', 'hangupCause', 'hangupCauseText', 'hangupRequestedAt', 'hangupReason', 'via', 'recording',
];

let dir: string;
let db: string;
let server: Serve | undefined;
const fakes: FakeAmi[] = [];
const routers: ChildProcess[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-calls-'));
  db = join(dir, 'vnum.db');
  expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002']).code).toBe(0);
  expect(vnum(['--db', db, 'session', 'create', 'o1', A, D]).code).toBe(0);
});
afterEach(async () => {
  await server?.stop();
  server = undefined;
  for (const r of routers.splice(0)) r.kill('SIGKILL');
  await Promise.all(fakes.splice(0).map((f) => f.stop()));
  rmSync(dir, { recursive: true, force: true });
});

function callsJson(args: string[] = []) {
  const r = vnum(['--db', db, 'calls', '--json', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Array<Record<string, unknown>>;
}

function health(port: number, extra: string[] = []) {
  const r = vnum(['--db', db, 'health', '--json', '--port', String(port), ...extra]);
  return { code: r.code, report: JSON.parse(r.stdout) as Record<string, any>, stderr: r.stderr };
}

/**
 * The built router alone on that port, in its own process (the CLI under test
 * runs synchronously): health probes it; it writes no report and never routes.
 */
async function listening(port: number): Promise<void> {
  const agi = pathToFileURL(join(dirname(VNUM_BIN), '../../agi/server.js')).href;
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { startFastAgiServer } = await import(${JSON.stringify(agi)}); ` +
        `await startFastAgiServer({ host: '127.0.0.1', port: ${port}, handler() { throw new Error('never'); }, fallback: { variables: [['VNUM_STATUS', 'ERROR']] } }); ` +
        `console.log('up');`,
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  routers.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`router exited ${code}`)));
  });
}

describe('vnum serve with AMI', () => {
  it('logs a bridged call from AMI events; health is green; SIGTERM leaves "stopped" behind', async () => {
    const fake = new FakeAmi({ secret: 'from-a-file' });
    await fake.listen();
    fakes.push(fake);
    writeFileSync(join(dir, 'secret'), 'from-a-file\n', { mode: 0o600 });
    server = await startServe({ db, env: { VNUM_AMI_USER: 'vnum', VNUM_AMI_SECRET_FILE: join(dir, 'secret'), VNUM_AMI_PORT: String(fake.port) } });
    const port = server.port;
    await until(() => health(port).report.ami?.state === 'logged-in', 10_000);
    expect(health(port)).toMatchObject({ code: 0, report: { healthy: true, asterisk: { version: '22.10.1' } } });
    expect(fake.actions('login')[0]!.get('Events')).toBe('call');

    const session = JSON.parse(vnum(['--db', db, 'session', 'show', 'o1', '--json']).stdout);
    const dMasked = session.parties[1].maskedAs as string;
    const routed = await placeCall(port, { agi_callerid: A, agi_extension: dMasked, agi_uniqueid: '1795600000.7', agi_channel: 'PJSIP/carrier-00000007' });
    expect(routed.command).toContain('VNUM_STATUS=BRIDGE');
    await until(() => callsJson().length === 1, 5_000);
    fake.event('DialBegin', 'call', [['Timestamp', '1795600000.100'], ['Uniqueid', '1795600000.7'], ['DestUniqueid', '1795600000.8']]);
    fake.event('DialEnd', 'call', [['Timestamp', '1795600001.000'], ['Uniqueid', '1795600000.7'], ['DialStatus', 'ANSWER']]);
    fake.event('Hangup', 'call', [['Timestamp', '1795600031.500'], ['Uniqueid', '1795600000.7'], ['Cause', '16'], ['Cause-txt', 'Normal Clearing']]);
    await until(() => callsJson()[0]!.state === 'ended', 5_000);
    const [call] = callsJson();
    expect(Object.keys(call!)).toEqual(CALL_FIELDS);
    expect(call).toMatchObject({
      session: 'o1',
      caller: 'first',
      answeredAt: '2026-11-25T09:46:41.000Z',
      endedAt: '2026-11-25T09:47:11.500Z',
      durationMs: 30_500,
      dialStatus: 'ANSWER',
      hangupCause: 16,
    });
    const table = vnum(['--db', db, 'calls']).stdout;
    expect(table).toMatch(/^ID\s+SESSION\s+CALLER\s+STATE/);
    expect(table).toMatch(/o1\s+first\s+ended\s+.*30\.5s\s+ANSWER\s+16 Normal Clearing/);

    expect(await server.stop()).toBe(0);
    expect(fake.actions('logoff')).toHaveLength(1);
    expect(health(port)).toMatchObject({ code: 1, report: { healthy: false, router: { ok: false }, ami: { ok: false, state: 'stopped' } } });
    expect(server.lines().join('\n')).not.toMatch(/7911000001|7911000002|from-a-file/);
  });

  it('refuses to start with an AMI user and no secret; there is no flag for the secret itself', async () => {
    const r = vnum(['--db', db, 'serve', '--port', String(await freePort()), '--ami-user', 'vnum']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/AMI user "vnum" given without a secret.*VNUM_AMI_SECRET/);
    const help = vnum(['serve', '--help']).stdout;
    expect(help).toContain('--ami-secret-file');
    expect(help).not.toMatch(/--ami-secret[^-]/);
  });
});

describe('vnum health', () => {
  it('exit 1 when nothing listens; the database check still runs', async () => {
    const port = await freePort();
    const { code, report } = health(port);
    expect(code).toBe(1);
    expect(report).toMatchObject({
      healthy: false,
      router: { ok: false, address: `127.0.0.1:${port}` },
      database: { ok: true, schemaVersion: MIGRATIONS.length },
      ami: { ok: false, state: 'unknown' },
      asterisk: { version: null },
    });
    expect(Object.keys(report)).toEqual(['healthy', 'router', 'database', 'ami', 'asterisk']);
  });

  it('judges AMI from vnum serve\'s own report: logged in and fresh, disabled, stale, reconnecting', async () => {
    const port = await freePort();
    await listening(port);
    const key = `127.0.0.1:${port}`;
    const report = (amiState: string, updatedAt = Date.now(), amiError: string | null = null) => {
      const handle = openDb(db);
      writeRouterStatus(handle, { router: key, pid: 1, startedAt: 0, updatedAt, amiState: amiState as never, amiSince: 0, amiError, asteriskVersion: '22.10.1' });
      handle.close();
    };
    report('logged-in');
    expect(health(port)).toMatchObject({ code: 0, report: { healthy: true, asterisk: { version: '22.10.1' } } });
    const text = vnum(['--db', db, 'health', '--port', String(port)]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^router {4}ok .*\ndatabase {2}ok .*\nami {7}ok {4}logged in since .*Asterisk 22\.10\.1\nhealthy\n$/);
    report('disabled');
    expect(health(port)).toMatchObject({ code: 0, report: { ami: { ok: true, state: 'disabled' } } });
    expect(health(port, ['--require-ami']).code).toBe(1);
    report('logged-in', Date.now() - 60_000);
    expect(health(port)).toMatchObject({ code: 1, report: { ami: { ok: false, error: expect.stringMatching(/gone or stuck/) } } });
    report('waiting', Date.now(), 'AMI login as "vnum" refused: Authentication failed');
    expect(health(port)).toMatchObject({ code: 1, report: { ami: { ok: false, state: 'waiting', error: expect.stringMatching(/Authentication failed/) }, asterisk: { version: null } } });
  });

  it('an unreadable database is unhealthy', async () => {
    const port = await freePort();
    const { code, report } = health(port, ['--db', join(dir, 'missing.db')]);
    expect(code).toBe(1);
    expect(report.database).toMatchObject({ ok: false, error: expect.stringMatching(/no database at .*missing\.db/) });
  });
});

describe('vnum calls and release --hangup', () => {
  it('lists nothing on a fresh log, refuses a bad --since, warns that --live needs vnum serve with AMI', () => {
    expect(callsJson()).toEqual([]);
    const bad = vnum(['--db', db, 'calls', '--since', 'yesterday']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid --since "yesterday".*\[VNUM_INVALID_ARGUMENT\]/);
    expect(vnum(['--db', db, 'calls', '--session', 'bad id']).code).toBe(1);
    const live = vnum(['--db', db, 'calls', '--live']);
    expect(live.code).toBe(0);
    expect(live.stderr).toMatch(/no vnum serve reports a live AMI connection/);
  });

  it('release --hangup asks vnum serve to hang up the session\'s open calls, and says how many are still up', () => {
    const handle = openDb(db);
    recordRoutedCall(handle, { uniqueid: '1.1', channel: 'PJSIP/carrier-00000001', session: 'o1', target: D, at: Date.now() });
    handle.close();
    const r = vnum(['--db', db, 'session', 'release', 'o1', '--hangup', '--wait', '300ms', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: 'o1', state: 'grace', changed: true, hangup: { requested: 1, ended: 0 } });
    expect(r.stderr).toMatch(/1 call\(s\) still up after 300ms/);
    expect(callsJson()[0]).toMatchObject({ hangupReason: 'release', state: 'routed' });
    expect(callsJson()[0]!.hangupRequestedAt).not.toBeNull();
    // Without --hangup: nothing about calls.
    const plain = JSON.parse(vnum(['--db', db, 'session', 'release', 'o1', '--json']).stdout);
    expect(plain).not.toHaveProperty('hangup');
  });
});

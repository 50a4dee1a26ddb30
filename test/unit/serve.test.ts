import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { samples } from '../support/exposition.js';
import { vnum } from '../support/cli.js';
import { placeCall } from '../support/fake-asterisk.js';
import { freePort } from '../support/net.js';
import { startServe, type Serve } from '../support/serve.js';
import { sleep } from '../support/wait.js';

let dir: string;
let db: string;
let server: Serve | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-serve-'));
  db = join(dir, 'vnum.db');
});
afterEach(async () => {
  await server?.stop();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const A = '+447911000001';
const D = '+447911000002';

describe('vnum serve (built executable)', () => {
  it('answers FastAGI calls from the store with the same decision as vnum route, and stops cleanly on SIGTERM', async () => {
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001']).code).toBe(0);
    const session = JSON.parse(vnum(['--db', db, 'session', 'create', 'o1', A, D, '--json']).stdout);
    const dMasked = session.parties[1].maskedAs as string;
    const aMasked = session.parties[0].maskedAs as string;
    server = await startServe({ db, env: { VNUM_DEFAULT_COUNTRY: 'GB' } });
    const port = server.port;

    const bridge = await placeCall(port, { agi_callerid: A, agi_extension: dMasked, agi_dnid: dMasked });
    expect(bridge.command).toBe(`EXEC MSet "VNUM_STATUS=BRIDGE,VNUM_TARGET=${D},VNUM_CLI=${aMasked},VNUM_SESSION=o1"`);
    // National caller format, DID without '+': the same bridge.
    const national = await placeCall(port, { agi_callerid: '07911000001', agi_extension: dMasked.slice(1) });
    expect(national.command).toBe(bridge.command);
    const stranger = await placeCall(port, { agi_callerid: '+447911000099', agi_extension: dMasked });
    expect(stranger.command).toBe('EXEC MSet "VNUM_STATUS=NO_SESSION,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION=,VNUM_SOUND=ss-noservice"');
    const hostile = await placeCall(port, { agi_callerid: `${A}&PJSIP/evil`, agi_extension: dMasked });
    expect(hostile.command).toBe('EXEC MSet "VNUM_STATUS=INVALID,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION=,VNUM_SOUND=cannot-complete-as-dialed"');
    // The router sees a release made by another process at once.
    expect(vnum(['--db', db, 'session', 'release', 'o1', '--grace', '0s']).code).toBe(0);
    const ended = await placeCall(port, { agi_callerid: A, agi_extension: dMasked });
    expect(ended.command).toBe('EXEC MSet "VNUM_STATUS=ENDED,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION=o1,VNUM_SOUND=vm-goodbye"');

    expect(await server.stop()).toBe(0);
    const log = server.lines().join('\n');
    expect(log).toContain('vnum router stopped');
    // No real number in full in any log line.
    expect(log).not.toMatch(/7911000001|7911000002/);
  });

  it('refuses to start on an unusable database or a taken port, with exit 2 and 1', async () => {
    writeFileSync(db, 'not a database, not a database, not a database, not a database, not a database', { mode: 0o600 });
    const broken = vnum(['--db', db, 'serve', '--port', String(await freePort())]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/vnum: cannot use database .*\[VNUM_DATABASE\]/);

    rmSync(db);
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as net.AddressInfo;
    try {
      const busy = vnum(['--db', db, 'serve', '--port', String(port)]);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(new RegExp(`^vnum: cannot listen on 127.0.0.1:${port}: .*EADDRINUSE.* \\[VNUM_LISTEN_FAILED\\]\n$`));
    } finally {
      taken.close();
    }
  });
});

describe('vnum serve judges every setting before it opens, creates or migrates a database', () => {
  // Each: the arguments and environment, and what the one error line must say.
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['an empty allow-list from the environment', [], { VNUM_AGI_ALLOW: '' }, /^VNUM_AGI_ALLOW is empty: the router would refuse every call/],
    ['a blank allow-list', ['--allow', ' '], {}, /^--allow is empty/],
    ['an impossible CIDR', ['--allow', '10.0.0.0/33'], {}, /^invalid --allow "10\.0\.0\.0\/33": allow-list entry is not a CIDR subnet/],
    ['an entry a variable expanded to nothing', [], { VNUM_AGI_ALLOW: '127.0.0.1,' }, /^invalid VNUM_AGI_ALLOW "127\.0\.0\.1,": entry 2 is empty/],
    ['an allow-list that admits the whole internet', ['--allow', '0.0.0.0/0'], {}, /admits every address/],
    ['a name in the allow-list', ['--allow', 'asterisk.local'], {}, /not an IP address/],
    ['a deadline of nothing', ['--deadline', '0s'], {}, /^invalid --deadline "0s": from 100ms to 10s/],
    ['a deadline past what a Node timer holds (it would fire after 1 ms)', ['--deadline', '25d'], {}, /^invalid --deadline "25d": from 100ms to 10s/],
    ['a deadline no caller waits out in silence', ['--deadline', '2m'], {}, /^invalid --deadline "2m"/],
    ['a drain past what a Node timer holds (it would stop at once)', ['--drain', '30d'], {}, /^invalid --drain "30d": from 0s to 60s/],
    ['a drain in a unit that is not one', ['--drain', '2 s'], {}, /^invalid --drain "2 s": use a whole number and a unit/],
    ['no connections at all', ['--max-connections', '0'], {}, /^invalid --max-connections "0": a whole number from 1 to 100000/],
    ['port 0 (Asterisk could not find it)', ['--port', '0'], {}, /^invalid --port "0": a whole number from 1 to 65535/],
    ['a port from the environment that is not one', [], { VNUM_AGI_PORT: '45 73' }, /^invalid VNUM_AGI_PORT "45 73"/],
    ['a host that is not one', ['--host', 'not a host'], {}, /^invalid --host "not a host": an IP address or a host name/],
    ['an IPv6 host in brackets', ['--host', '[::1]'], {}, /without brackets/],
    ['a log level pino does not know', [], { VNUM_LOG_LEVEL: 'bogus' }, /^invalid VNUM_LOG_LEVEL "bogus"/],
    ['a redaction switch that might mean either', [], { VNUM_LOG_REDACT: 'no' }, /^invalid VNUM_LOG_REDACT "no"/],
    ['an AMI port out of range', ['--ami-user', 'vnum', '--ami-port', '99999'], { VNUM_AMI_SECRET: 's' }, /^invalid AMI port/],
    ['an AMI secret file without an AMI user', [], { VNUM_AMI_SECRET_FILE: '/etc/hostname' }, /VNUM_AMI_SECRET_FILE given without an AMI user/],
    ['a metrics port out of range', ['--metrics-port', '70000'], {}, /^invalid --metrics-port "70000": a whole number from 1 to 65535/],
    ['a metrics port from the environment that is not one', [], { VNUM_METRICS_PORT: 'on' }, /^invalid VNUM_METRICS_PORT "on": a whole number from 1 to 65535/],
    ['a metrics host that is not one', ['--metrics-host', 'not a host'], {}, /^invalid --metrics-host "not a host"/],
    ['store figures read on every scrape', ['--metrics-store-age', '100ms'], {}, /^invalid --metrics-store-age "100ms": from 1s to 3600s/],
    ['a control character in a setting, echoed escaped', ['--host', 'a\u001b[2Jb'], {}, /^invalid --host "a\\x1b\[2Jb"/],
  ];
  it.each(cases)('%s: exit 1, one line, VNUM_CONFIGURATION, no database', (_what, args, env, message) => {
    const nested = join(dir, 'not-yet', 'vnum.db');
    const port = 'VNUM_AGI_PORT' in env ? [] : ['--port', '45731'];
    const r = vnum(['--db', nested, 'serve', ...port, ...args], env);
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.replace(/^vnum: /, '')).toMatch(message);
    expect(lines[0]).toMatch(/^vnum: .* \[VNUM_CONFIGURATION\]$/);
    expect(existsSync(join(dir, 'not-yet')), 'the database folder').toBe(false);
  });

  it('an AMI secret file others can read is refused, not warned about', () => {
    const secret = join(dir, 'ami-secret');
    writeFileSync(secret, 'a-long-secret\n', { mode: 0o644 });
    chmodSync(secret, 0o644);
    const r = vnum(['--db', join(dir, 'not-yet', 'vnum.db'), 'serve', '--port', '45731', '--ami-user', 'vnum', '--ami-secret-file', secret]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^vnum: the AMI secret file ".*ami-secret" is not owner-only: mode 0644 .*chmod 600.* \[VNUM_CONFIGURATION\]\n$/);
    expect(existsSync(join(dir, 'not-yet'))).toBe(false);
  });

  it('a bad --country is refused before the database too', () => {
    const r = vnum(['--db', join(dir, 'not-yet', 'vnum.db'), 'serve', '--port', '45731', '--country', 'G1']);
    expect(r.code).toBe(1);
    expect(existsSync(join(dir, 'not-yet'))).toBe(false);
  });
});

describe('vnum health proves the router answers', () => {
  it('a router that refuses the address health probes from is unhealthy, with the reason; the same router is healthy once that address is allowed', async () => {
    const port = await freePort();
    server = await startServe({ db, port, args: ['--allow', '10.9.9.9'] });
    const refused = vnum(['--db', db, 'health', '--json', '--port', String(port)]);
    expect(refused.code).toBe(1);
    const report = JSON.parse(refused.stdout);
    expect(report.router).toMatchObject({ ok: false, error: expect.stringMatching(/without answering: 127\.0\.0\.1 is not in its allow-list/) });
    expect(report.healthy).toBe(false);
    // The text form says it in one line.
    expect(vnum(['--db', db, 'health', '--port', String(port)]).stdout).toMatch(/^router {4}FAIL {2}127\.0\.0\.1:\d+: the router closed the connection without answering/);
    await server.stop();
    server = await startServe({ db, port, args: ['--allow', '10.9.9.9,127.0.0.1'] });
    const ok = vnum(['--db', db, 'health', '--json', '--port', String(port)]);
    expect(JSON.parse(ok.stdout).router).toEqual({ ok: true, address: `127.0.0.1:${port}`, error: null });
    expect(ok.code).toBe(0);
    // No warning in the router's log for the probe that was allowed.
    expect(server.lines().filter((l) => l.includes('"level":40') && !l.includes('10.9.9.9'))).toEqual([]);
  });

  it('something else holding the port is not a router', async () => {
    // In its own process: the CLI under test runs synchronously and would block a listener in this one.
    const port = await freePort();
    const other = spawn(
      process.execPath,
      ['-e', `require('net').createServer((s) => s.end('220 smtp.example ESMTP\\r\\n')).listen(${port}, '127.0.0.1', () => console.log('up'))`],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      await new Promise((resolve) => other.stdout!.once('data', resolve));
      const r = vnum(['--db', db, 'health', '--json', '--port', String(port)]);
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout).router.error).toMatch(/not a vnum router .*220 smtp\.example/);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('its own settings are bounded like serve\'s', () => {
    const late = vnum(['--db', db, 'health', '--timeout', '25d']);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/^vnum: invalid --timeout "25d": from 100ms to 60s \[VNUM_CONFIGURATION\]\n$/);
    const port = vnum(['--db', db, 'health'], { VNUM_AGI_PORT: 'x' });
    expect(port.code).toBe(1);
    expect(port.stderr).toMatch(/invalid VNUM_AGI_PORT "x"/);
  });
});

async function scrape(port: number): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return samples(await response.text());
}

describe('vnum serve --metrics-port (built executable)', () => {
  it('serves what it routes, its connections and the store figures on a loopback port of its own', async () => {
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002']).code).toBe(0);
    expect(vnum(['--db', db, 'pool', 'add', '--reserved', '+442079460003']).code).toBe(0);
    // Webhook events recorded, no deliverer running: the backlog grows.
    expect(vnum(['--db', db, 'webhooks', 'enable']).code).toBe(0);
    const session = JSON.parse(vnum(['--db', db, 'session', 'create', 'o1', A, D, '--json']).stdout);
    const dMasked = session.parties[1].maskedAs as string;
    const metricsPort = await freePort();
    server = await startServe({ db, env: { VNUM_METRICS_PORT: String(metricsPort) }, args: ['--metrics-store-age', '1s'] });
    expect(server.lines().join('\n')).toContain(`"metrics":"127.0.0.1:${metricsPort}"`);

    await placeCall(server.port, { agi_callerid: A, agi_extension: dMasked });
    await placeCall(server.port, { agi_callerid: '+447911000099', agi_extension: dMasked });
    expect(vnum(['--db', db, 'health', '--port', String(server.port)]).code).toBe(0);
    // Created after the start: seen once the figures are read again (--metrics-store-age 1s).
    expect(vnum(['--db', db, 'session', 'create', 'o2', A, '+447911000003']).code).toBe(0);

    let s = await scrape(metricsPort);
    const deadline = Date.now() + 10_000;
    while (s.get('vnum_sessions{state="active"}') !== 2) {
      if (Date.now() > deadline) throw new Error(`the figures never showed both sessions: ${JSON.stringify([...s])}`);
      await sleep(200);
      s = await scrape(metricsPort);
    }
    expect(s.get('vnum_calls_routed_total{status="BRIDGE"}')).toBe(1);
    expect(s.get('vnum_calls_routed_total{status="NO_SESSION"}')).toBe(1);
    expect(s.get('vnum_route_decision_seconds_count')).toBe(2);
    expect(s.get('vnum_agi_connections_ended_total{outcome="answered"}')).toBe(2);
    expect(s.get('vnum_agi_connections_ended_total{outcome="probe"}')).toBe(1);
    expect(s.get('vnum_agi_connections_max')).toBe(256);
    expect(s.get('vnum_pool_numbers{state="available"}')).toBe(2);
    expect(s.get('vnum_pool_numbers{state="reserved"}')).toBe(1);
    // A is in both sessions: 2 available numbers - 2.
    expect(s.get('vnum_party_live_sessions_max')).toBe(2);
    expect(s.get('vnum_pool_headroom')).toBe(0);
    expect(s.has('vnum_ami_connected'), 'no AMI configured: no AMI gauge').toBe(false);
    // Two session.created events wait for a deliverer that never ran (and whatever the calls reported).
    expect(s.get('vnum_webhook_recording')).toBe(1);
    expect(s.get('vnum_webhook_backlog')).toBeGreaterThanOrEqual(2);
    expect(s.get('vnum_webhook_oldest_undelivered_age_seconds')).toBeGreaterThan(0);
    expect(s.get('vnum_webhook_deliveries_total')).toBe(0);

    expect((await fetch(`http://127.0.0.1:${metricsPort}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    expect(await server.stop()).toBe(0);
    await expect(fetch(`http://127.0.0.1:${metricsPort}/metrics`)).rejects.toThrow();
  });

  it('is off unless asked for', async () => {
    server = await startServe({ db });
    expect(server.lines().join('\n')).toContain('"metrics":"off"');
  });

  it('a taken metrics port stops the start with VNUM_LISTEN_FAILED, and leaves no router listening', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as net.AddressInfo;
    const agiPort = await freePort();
    try {
      const r = vnum(['--db', db, 'serve', '--port', String(agiPort), '--metrics-port', String(port)]);
      expect(r.code).toBe(1);
      // The metrics endpoint binds first: the router never listened.
      expect(r.stderr).not.toContain('FastAGI router listening');
      expect(r.stderr).toMatch(new RegExp(`(^|\n)vnum: cannot listen on 127.0.0.1:${port}: .*EADDRINUSE.* \\[VNUM_LISTEN_FAILED\\]\n$`));
    } finally {
      taken.close();
    }
  });
});

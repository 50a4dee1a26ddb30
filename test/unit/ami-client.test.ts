/**
 * asterisk-manager 0.2.0's defects (README.md, "Call log, hang-ups and health"), each
 * shown on the library itself against a fake AMI on a real socket, and then
 * the same situation on our client (src/ami/client.ts). Remove a cover and
 * the "ours" half of its test fails.
 */
import Manager, { type ManagerInstance, type ManagerMessage } from 'asterisk-manager';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { actionIdSource, checkedAction } from '../../src/ami/action.js';
import { AmiClient, type AmiClientOptions, type AmiEvent } from '../../src/ami/client.js';
import type { AmiError } from '../../src/ami/errors.js';
import { captureLog } from '../support/log.js';
import { sleep, until } from '../support/wait.js';
import { FakeAmi } from '../support/fake-ami.js';

const fakes: FakeAmi[] = [];
const clients: AmiClient[] = [];
const managers: ManagerInstance[] = [];

async function fake(options: ConstructorParameters<typeof FakeAmi>[0] = {}): Promise<FakeAmi> {
  const f = new FakeAmi(options);
  await f.listen();
  fakes.push(f);
  return f;
}

function client(f: FakeAmi, options: Partial<AmiClientOptions> = {}) {
  const log = captureLog();
  const c = new AmiClient({
    host: '127.0.0.1',
    port: f.port,
    username: 'vnum',
    secret: 'secret',
    eventClasses: ['call'],
    events: ['Hangup', 'DialBegin', 'DialEnd', 'VarSet'],
    actionTimeoutMs: 500,
    reconnectInitialMs: 20,
    reconnectMaxMs: 200,
    pingIntervalMs: 0,
    logger: log.logger,
    random: () => 0.5,
    ...options,
  });
  const events: AmiEvent[] = [];
  c.on('event', (e) => events.push(e));
  clients.push(c);
  return { c, log, events };
}

/** Started and fully logged in (version asked too). */
async function loggedIn(c: AmiClient): Promise<void> {
  const login = new Promise((r) => c.once('login', r));
  c.start();
  await login;
}

/** The library, connected and logged in its own way. */
async function library(f: FakeAmi): Promise<{ m: ManagerInstance; events: ManagerMessage[] }> {
  const before = f.authenticatedSessions();
  const m = Manager(f.port, '127.0.0.1', 'vnum', 'secret', false);
  managers.push(m);
  const events: ManagerMessage[] = [];
  m.on('managerevent', (e: ManagerMessage) => events.push(e));
  await until(() => f.authenticatedSessions() > before);
  return { m, events };
}

async function settled(p: Promise<unknown>, ms = 50): Promise<boolean> {
  const pending = Symbol();
  return (await Promise.race([p.then(() => true, () => true), sleep(ms).then(() => pending)])) !== pending;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  for (const m of managers.splice(0)) m.disconnect();
  await Promise.all(fakes.splice(0).map((f) => f.stop()));
  vi.restoreAllMocks();
});

describe('defect 1: login sends `Event: off`, Asterisk reads only `Events`', () => {
  it('library: no Events header, so the session gets every class (a dialplan VarSet arrives)', async () => {
    const f = await fake();
    const { events } = await library(f);
    const login = f.actions('login')[0]!;
    expect(login.get('Event')).toBe('off');
    expect(login.get('Events')).toBeUndefined();
    f.event('VarSet', 'dialplan', [['Variable', 'VNUM_TARGET'], ['Value', '+441614960456']]);
    await until(() => events.length > 0);
    expect(events[0]!.event).toBe('VarSet');
  });

  it('ours: Login carries `Events: call`; only call-class events arrive', async () => {
    const f = await fake();
    const { c, events } = client(f);
    await loggedIn(c);
    expect(f.actions('login')[0]!.get('Events')).toBe('call');
    f.event('VarSet', 'dialplan', [['Variable', 'VNUM_TARGET'], ['Value', '+441614960456']]);
    f.event('Hangup', 'call', [['Uniqueid', '1.1'], ['Cause', '16']]);
    await until(() => events.length > 0);
    await sleep(30);
    expect(events.map((e) => e.name)).toEqual(['Hangup']);
    expect(events[0]!.fields.cause).toBe('16');
  });

  it('ours: the second, gate-opening Login is answered "Already authenticated" and changes nothing', async () => {
    const f = await fake();
    const { c, events } = client(f);
    await loggedIn(c);
    const logins = f.actions('login');
    expect(logins).toHaveLength(2);
    expect(logins[1]!.get('Secret')).toBe('');
    f.event('VarSet', 'dialplan');
    f.event('DialBegin', 'call', [['Uniqueid', '1.1']]);
    await until(() => events.length > 0);
    expect(events.map((e) => e.name)).toEqual(['DialBegin']);
  });

  it('ours: no event classes at all logs in with `Events: off`', async () => {
    const f = await fake();
    const { c } = client(f, { eventClasses: [] });
    await loggedIn(c);
    expect(f.actions('login')[0]!.get('Events')).toBe('off');
  });
});

describe('defect 2: CR/LF in a header value injects headers and actions', () => {
  const INJECTION = 'PJSIP/carrier-00000001\r\n\r\nAction: Originate\r\nChannel: PJSIP/+441514960321@carrier\r\nApplication: System\r\nData: id';

  it('library: a channel name with CRLF becomes a second action (an Originate)', async () => {
    const f = await fake();
    const { m } = await library(f);
    m.action({ action: 'hangup', channel: INJECTION });
    await until(() => f.actions('originate').length > 0);
    expect(f.actions('originate')[0]!.get('Application')).toBe('System');
  });

  it('library: headers are sorted, so an `Action:` injected in the same message can come first', async () => {
    const f = await fake();
    const { m } = await library(f);
    // "Account: …" sorts before "Action: hangup": Asterisk reads the first Action header.
    m.action({ action: 'hangup', channel: 'PJSIP/carrier-00000001', account: 'x\r\nAction: Originate' });
    await until(() => f.actions('originate').length > 0);
    expect(f.actions('originate')[0]!.headers.filter(([n]) => n === 'Action').map(([, v]) => v)).toEqual(['Originate', 'hangup']);
  });

  it('ours: CR, LF or NUL anywhere in a name or value refuses the action; nothing is written', async () => {
    const f = await fake();
    const { c } = client(f);
    await loggedIn(c);
    const before = f.received.length;
    for (const value of [INJECTION, 'a\rb', 'a\nb', 'a\0b', `x${'y'.repeat(1001)}`]) {
      await expect(c.action('Hangup', { Channel: value })).rejects.toMatchObject({ code: 'AMI_BAD_HEADER' });
    }
    for (const name of ['Chan\r\nnel', 'Chan nel', 'Channel:', '', 'ActionID', 'Action']) {
      await expect(c.action('Hangup', { [name]: 'x' })).rejects.toMatchObject({ code: 'AMI_BAD_HEADER' });
    }
    await expect(c.action('Hangup\r\nAction: Originate', { Channel: 'x' })).rejects.toMatchObject({ code: 'AMI_BAD_HEADER' });
    await sleep(30);
    expect(f.received.length).toBe(before);
    expect(f.actions('originate')).toEqual([]);
  });

  it('ours: the secret and user name are checked too, when the client is made', async () => {
    const f = await fake();
    expect(() => client(f, { secret: 'secret\r\nEvents: on' })).toThrow(/CR, LF or NUL/);
    expect(() => client(f, { username: 'vnum\nx' })).toThrow(/CR, LF or NUL/);
  });

  it('checkedAction keeps values verbatim otherwise', () => {
    expect(checkedAction('Hangup', { Channel: 'PJSIP/carrier-0000000a', Cause: 16 }, 'id-1')).toEqual({
      action: 'Hangup',
      channel: 'PJSIP/carrier-0000000a',
      cause: '16',
      actionid: 'id-1',
    });
  });
});

describe('defect 3: every error is swallowed', () => {
  it('library: its only error listener is a no-op; a refused connection reaches no one', async () => {
    const f = await fake();
    const port = f.port;
    await f.stop();
    const m = Manager(port, '127.0.0.1', 'vnum', 'secret', false);
    managers.push(m);
    expect(m.listeners('error')).toHaveLength(1);
    await new Promise((r) => m.once('close', r));
    expect(m.isConnected()).toBeFalsy();
  });

  it('ours: a refused connection is logged and kept in status().lastError', async () => {
    const f = await fake();
    const port = f.port;
    await f.stop();
    const { c, log } = client(f, { port });
    c.start();
    await until(() => c.status().lastError !== null);
    expect(c.status().lastError).toMatch(/ECONNREFUSED/);
    await until(() => log.records().some((r) => r.msg === 'AMI connection failed'));
    expect(log.records().find((r) => r.msg === 'AMI connection failed')).toMatchObject({ code: 'AMI_SOCKET', reason: expect.stringMatching(/ECONNREFUSED/) });
  });

  it('ours: a reset connection fails the action in flight with the socket error as its cause', async () => {
    const f = await fake({ silent: new Set(['hangup']) });
    const { c } = client(f, { actionTimeoutMs: 5_000 });
    await loggedIn(c);
    const pending = c.action('Hangup', { Channel: 'PJSIP/carrier-00000001' });
    await until(() => f.actions('hangup').length > 0);
    f.resetAll();
    const error = (await pending.catch((e: unknown) => e)) as AmiError;
    expect(error.code).toBe('AMI_DISCONNECTED');
    expect(String((error.cause as Error).message)).toMatch(/ECONNRESET/);
  });
});

describe('defect 4: ActionID is Date.now()', () => {
  it('library: two clients in the same millisecond send the same ActionID', async () => {
    const f = await fake();
    const a = await library(f);
    const b = await library(f);
    vi.spyOn(Date.prototype, 'getTime').mockReturnValue(1_700_000_000_000);
    a.m.action({ action: 'ping' });
    b.m.action({ action: 'ping' });
    vi.restoreAllMocks();
    await until(() => f.actions('ping').length === 2);
    const [x, y] = f.actions('ping').map((p) => p.get('ActionID'));
    expect(x).toBe('1700000000000');
    expect(y).toBe(x);
  });

  it('ours: 500 actions at once, two clients: every ActionID distinct, every answer to its own action', async () => {
    const f = await fake();
    const one = client(f);
    const two = client(f);
    await loggedIn(one.c);
    await loggedIn(two.c);
    f.channels = Array.from({ length: 500 }, (_, i) => ({ channel: `PJSIP/c-${i}`, uniqueid: `1.${i}` }));
    const results = await Promise.allSettled(
      Array.from({ length: 500 }, (_, i) => (i % 2 ? one.c : two.c).action('Hangup', { Channel: `PJSIP/c-${i}` })),
    );
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    const ids = f.actions('hangup').map((a) => a.get('ActionID'));
    expect(new Set(ids).size).toBe(500);
    const source = actionIdSource();
    const other = actionIdSource();
    expect(source()).not.toBe(other());
  });
});

describe('defect 5: no timeout, nothing rejected on disconnect, actions held before login', () => {
  it('library: an unanswered action and one in flight when the connection drops never call back', async () => {
    const f = await fake({ silent: new Set(['hangup']) });
    const { m } = await library(f);
    const called = vi.fn();
    m.action({ action: 'hangup', channel: 'x' }, called);
    await until(() => f.actions('hangup').length === 1);
    await sleep(300);
    await f.stop();
    await sleep(100);
    expect(called).not.toHaveBeenCalled();
  });

  it('library: an action asked for before a failed login is held forever, never sent', async () => {
    const f = await fake();
    const m = Manager(f.port, '127.0.0.1', 'vnum', 'wrong', false);
    managers.push(m);
    const called = vi.fn();
    m.action({ action: 'ping' }, called);
    await until(() => f.actions('login').length === 1);
    await sleep(200);
    expect(f.actions('ping')).toEqual([]);
    expect(called).not.toHaveBeenCalled();
  });

  it('ours: an unanswered action times out', async () => {
    const f = await fake({ silent: new Set(['hangup']) });
    const { c } = client(f, { actionTimeoutMs: 150 });
    await loggedIn(c);
    const started = Date.now();
    await expect(c.action('Hangup', { Channel: 'x' })).rejects.toMatchObject({ code: 'AMI_TIMEOUT' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(Date.now() - started).toBeLessThan(400);
  });

  it('ours: actions in flight are rejected as soon as the connection drops', async () => {
    const f = await fake({ silent: new Set(['hangup']) });
    const { c } = client(f, { actionTimeoutMs: 10_000 });
    await loggedIn(c);
    const pending = [c.action('Hangup', { Channel: 'a' }), c.action('Hangup', { Channel: 'b' })];
    await until(() => f.actions('hangup').length === 2);
    const started = Date.now();
    await f.stop();
    for (const p of pending) await expect(p).rejects.toMatchObject({ code: 'AMI_DISCONNECTED' });
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('ours: an action while not logged in is refused at once and never sent later', async () => {
    const f = await fake({ loginDelayMs: 200 });
    const { c } = client(f);
    c.start();
    await expect(c.action('Ping')).rejects.toMatchObject({ code: 'AMI_NOT_CONNECTED' });
    await until(() => c.loggedIn);
    await sleep(50);
    expect(f.actions('ping')).toEqual([]);
  });

  it('ours: a refused login is reported, and retried with back-off', async () => {
    const f = await fake();
    const { c, log } = client(f, { secret: 'wrong' });
    c.start();
    await until(() => f.actions('login').length >= 2, 3_000);
    expect(c.loggedIn).toBe(false);
    expect(c.status().lastError).toMatch(/refused: Authentication failed/);
    expect(log.lines.join('')).not.toContain('wrong');
    expect(log.records().some((r) => r.level === 50 && /AMI login as "vnum" refused/.test(String(r.msg)))).toBe(true);
  });

  it('ours: a Ping that is never answered abandons the connection and logs in again', async () => {
    const f = await fake({ silent: new Set(['ping']) });
    const { c } = client(f, { pingIntervalMs: 50, actionTimeoutMs: 100 });
    await loggedIn(c);
    await until(() => f.actions('login').length >= 4, 3_000); // two logins per connection
    expect(f.connections.length).toBeGreaterThanOrEqual(2);
  });
});

describe('defect 6: reconnect only with keepConnected(), linear 10 s to 60 s', () => {
  it('library: after Asterisk restarts, nothing reconnects', async () => {
    const f = await fake();
    const { m } = await library(f);
    await f.restart();
    await sleep(500);
    expect(m.isConnected()).toBeFalsy();
    expect(f.connections).toHaveLength(1);
  });

  it('ours: exponential back-off while Asterisk is down, then logged in again by itself', async () => {
    const f = await fake();
    const { c, events } = client(f, { reconnectInitialMs: 50, reconnectMaxMs: 10_000 });
    await loggedIn(c);
    f.refuse = true;
    f.resetAll();
    await until(() => f.connectedAt.length >= 6, 5_000);
    // Attempts after the reset: at 50 ms, then 100, 200, 400, 800 ms apart.
    const attempts = f.connectedAt.slice(1);
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(90);
    for (let i = 1; i < gaps.length; i++) {
      expect(gaps[i]! / gaps[i - 1]!).toBeGreaterThan(1.6);
      expect(gaps[i]! / gaps[i - 1]!).toBeLessThan(2.6);
    }
    f.refuse = false;
    await until(() => c.loggedIn, 5_000);
    expect(c.status().failures).toBe(0);
    f.event('Hangup', 'call', [['Uniqueid', '2.2']]);
    await until(() => events.length === 1);
  });

  it('ours: the back-off is capped', async () => {
    const f = await fake();
    const { c } = client(f, { reconnectInitialMs: 20, reconnectMaxMs: 60 });
    f.refuse = true;
    c.start();
    await until(() => f.connectedAt.length >= 6, 5_000);
    const gaps = f.connectedAt.slice(1).map((t, i) => t - f.connectedAt[i]!);
    expect(Math.max(...gaps)).toBeLessThan(150);
  });

  it('ours: Asterisk restarting is seen, the login comes back, events flow again', async () => {
    const f = await fake();
    const { c, events } = client(f);
    const logins: unknown[] = [];
    c.on('login', (l) => logins.push(l));
    await loggedIn(c);
    await f.restart(100);
    await until(() => logins.length === 2, 5_000);
    expect(c.status().asteriskVersion).toBe('22.10.1');
    f.event('DialEnd', 'call', [['Uniqueid', '3.3'], ['DialStatus', 'ANSWER']]);
    await until(() => events.length === 1);
    expect(events[0]!.fields.dialstatus).toBe('ANSWER');
  });
});

describe('one library instance per connection', () => {
  it('library: a message cut by a dropped connection is glued to the next connection\'s first message', async () => {
    const f = await fake();
    const m = Manager(f.port, '127.0.0.1', 'vnum', 'secret', false);
    managers.push(m);
    const events: ManagerMessage[] = [];
    m.on('managerevent', (e: ManagerMessage) => events.push(e));
    await until(() => f.authenticatedSessions() === 1);
    f.write('Event: Hang');
    await sleep(30);
    const closed = new Promise((r) => m.once('close', r));
    await f.restart();
    await closed;
    m.connect(f.port, '127.0.0.1');
    await until(() => f.connections.length === 2);
    f.received.length = 0;
    await sleep(30);
    f.write('Event: Hangup\r\nUniqueid: 9.9\r\n\r\n');
    await until(() => events.length > 0);
    expect(events[0]!.event).toBe('HangAsterisk Call Manager/11.0.0');
  });

  it('ours: the next connection starts clean', async () => {
    const f = await fake();
    const { c, events } = client(f);
    await loggedIn(c);
    f.write('Event: Hang');
    await sleep(30);
    await f.restart();
    await until(() => c.loggedIn && f.authenticatedSessions() === 1, 5_000);
    f.event('Hangup', 'call', [['Uniqueid', '9.9']]);
    await until(() => events.length > 0);
    expect(events.map((e) => [e.name, e.fields.uniqueid])).toEqual([['Hangup', '9.9']]);
  });
});

describe('the rest of the client', () => {
  it('event lists: CoreShowChannels gathers its events up to EventList: Complete', async () => {
    const f = await fake();
    const { c } = client(f);
    await loggedIn(c);
    f.channels = [
      { channel: 'PJSIP/carrier-00000001', uniqueid: '1.1' },
      { channel: 'PJSIP/carrier-00000002', uniqueid: '1.2' },
    ];
    const list = await c.actionList('CoreShowChannels');
    expect(list.map((m) => m.fields.uniqueid)).toEqual(['1.1', '1.2']);
  });

  it('an error response rejects with its message', async () => {
    const f = await fake();
    const { c } = client(f);
    await loggedIn(c);
    await expect(c.action('Hangup', { Channel: 'PJSIP/nope' })).rejects.toThrow(/Hangup: No such channel/);
  });

  it('Timestamp is used when Asterisk sends it; otherwise the read time, with one warning', async () => {
    const f = await fake();
    const { c, events, log } = client(f);
    await loggedIn(c);
    f.event('Hangup', 'call', [['Timestamp', '1795602069.413664'], ['Uniqueid', '1.1']]);
    f.event('Hangup', 'call', [['Uniqueid', '1.2']]);
    f.event('Hangup', 'call', [['Uniqueid', '1.3']]);
    await until(() => events.length === 3);
    expect(events[0]).toMatchObject({ at: 1795602069414, timestamped: true });
    expect(events[1]!.timestamped).toBe(false);
    expect(log.records().filter((r) => /no Timestamp/.test(String(r.msg)))).toHaveLength(1);
  });

  it('a Timestamp beyond what a date can hold is not taken (the call log could not print it): the read time instead', async () => {
    const f = await fake();
    const { c, events } = client(f);
    await loggedIn(c);
    const before = Date.now();
    f.event('Hangup', 'call', [['Timestamp', '1e20'], ['Uniqueid', '1.1']]);
    f.event('Hangup', 'call', [['Timestamp', '8640000000000.5'], ['Uniqueid', '1.2']]);
    await until(() => events.length === 2);
    for (const event of events) {
      expect(event.timestamped).toBe(false);
      expect(event.at).toBeGreaterThanOrEqual(before);
      expect(event.at).toBeLessThanOrEqual(Date.now());
    }
  });

  it('a listener that throws is logged, and the client carries on', async () => {
    const f = await fake();
    const { c, log, events } = client(f);
    c.on('event', () => {
      throw new Error('listener bug');
    });
    await loggedIn(c);
    f.event('Hangup', 'call', [['Uniqueid', '1.1']]);
    f.event('Hangup', 'call', [['Uniqueid', '1.2']]);
    await until(() => events.length === 2);
    expect(log.records().some((r) => r.msg === 'AMI event listener failed')).toBe(true);
    expect(c.loggedIn).toBe(true);
  });

  it('stop() logs off and stops reconnecting', async () => {
    const f = await fake();
    const { c } = client(f);
    await loggedIn(c);
    await c.stop();
    expect(f.actions('logoff')).toHaveLength(1);
    const connections = f.connections.length;
    await sleep(200);
    expect(f.connections.length).toBe(connections);
    expect(c.status().state).toBe('stopped');
  });

  it('the Asterisk version comes from CoreSettings; without write=reporting it is unknown, and the rest works', async () => {
    const f = await fake({ silent: new Set(['coresettings']) });
    const { c, log } = client(f, { actionTimeoutMs: 100 });
    await loggedIn(c);
    await until(() => log.records().some((r) => /CoreSettings failed/.test(String(r.msg))));
    expect(c.status().asteriskVersion).toBeNull();
    expect(c.loggedIn).toBe(true);
  });
});

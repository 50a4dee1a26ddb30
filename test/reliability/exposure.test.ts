/**
 * Exposure:
 * - `vnum serve` refuses FastAGI connections from addresses outside its
 *   allow-list, before reading a byte (tested from 127.0.0.2), and listens on
 *   loopback only by default;
 * - dialplan/manager.sample.conf gives the router's AMI user only what vnum
 *   uses, from loopback only, on loopback only. (Loaded into a real Asterisk
 *   22 in test/e2e/exposure.e2e.test.ts.)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vnum } from '../support/cli.js';
import { callEnvironment } from '../support/fake-asterisk.js';
import { startServe, type Serve } from '../support/serve.js';
import { sleep } from '../support/wait.js';
import { exchange, parseAnswer, parseAsteriskConf } from './lib.js';

const A = '+447911000001';
const D = '+447911000002';
const ENV = { VNUM_DEFAULT_COUNTRY: 'GB' };

describe('vnum serve allow-list', () => {
  let dir: string;
  let db: string;
  let dMasked: string;
  let serve: Serve | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vnum-rel-exposure-'));
    db = join(dir, 'vnum.db');
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001'], ENV).code).toBe(0);
    dMasked = JSON.parse(vnum(['--db', db, 'session', 'create', 'o1', A, D, '--json'], ENV).stdout).parties[1].maskedAs;
  });
  afterEach(async () => {
    await serve?.stop();
    serve = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A whole legitimate call from `localAddress`: what the router wrote back. */
  async function callFrom(localAddress: string): Promise<{ status: string | undefined; received: string; error: string | undefined }> {
    const r = await exchange(serve!.port, { send: callEnvironment(A, dMasked), then: 'hold', localAddress, timeoutMs: 5_000 });
    return { status: parseAnswer(r.received.trimEnd())?.status, received: r.received, error: r.error };
  }

  for (const [name, args, env] of [
    ['by default (loopback only)', [], {}],
    ['with --allow 127.0.0.1', ['--allow', '127.0.0.1'], {}],
    ['with VNUM_AGI_ALLOW=127.0.0.1', [], { VNUM_AGI_ALLOW: '127.0.0.1' }],
  ] as const) {
    it(`${name}: a call from 127.0.0.2 is cut before a byte is read and gets nothing; from 127.0.0.1 it bridges`, async () => {
      serve = await startServe({ db, args: [...args], env });
      const outsider = await callFrom('127.0.0.2');
      expect(outsider.received).toBe('');
      expect(outsider.status).toBeUndefined();
      // The router's log line comes through a pipe: give it a moment.
      for (let i = 0; i < 100 && !serve.lines().some((l) => l.includes('address not in allow-list')); i++) await sleep(20);
      const refusals = serve.lines().filter((l) => l.includes('address not in allow-list'));
      expect(refusals.length).toBe(1);
      expect(JSON.parse(refusals[0]!)).toMatchObject({ address: '127.0.0.2' });
      expect((await callFrom('127.0.0.1')).status).toBe('BRIDGE');
    });
  }

  it('control: allowing 127.0.0.2 only, the same call from 127.0.0.2 bridges and one from 127.0.0.1 is cut', async () => {
    serve = await startServe({ db, args: ['--allow', '127.0.0.2'] });
    expect((await callFrom('127.0.0.2')).status).toBe('BRIDGE');
    expect((await callFrom('127.0.0.1')).received).toBe('');
  });

  it('a CIDR allow-list admits its subnet only', async () => {
    serve = await startServe({ db, args: ['--allow', '127.0.0.0/30'] });
    expect((await callFrom('127.0.0.2')).status).toBe('BRIDGE');
    expect((await callFrom('127.0.0.5')).received).toBe('');
  });

  it('listens on 127.0.0.1 only by default: nothing answers on another local address', async () => {
    serve = await startServe({ db });
    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect({ port: serve!.port, host: '127.0.0.2' });
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});

// ---------------------------------------------------------------------------
// dialplan/manager.sample.conf

const SAMPLE = new URL('../../dialplan/manager.sample.conf', import.meta.url);

/** Every AMI class Asterisk 22 knows (manager.conf.sample), "all" included. */
const AMI_CLASSES = new Set(['all', 'system', 'call', 'log', 'verbose', 'agent', 'user', 'config', 'command', 'dtmf', 'reporting', 'cdr', 'dialplan', 'originate', 'agi', 'cc', 'aoc', 'test', 'security', 'message']);
/** Call-class events (Asterisk 22's core-en_US.xml): what read = call delivers. */
const CALL_EVENTS = new Set(['Newchannel', 'Newstate', 'DialBegin', 'DialEnd', 'DialState', 'BridgeEnter', 'BridgeLeave', 'Hangup', 'HangupRequest', 'SoftHangupRequest']);

describe('dialplan/manager.sample.conf', () => {
  const conf = parseAsteriskConf(readFileSync(SAMPLE, 'utf8'));
  const general = new Map(conf.get('general'));
  const users = [...conf.keys()].filter((k) => k !== 'general');
  const user = conf.get('vnum') ?? [];
  const values = (key: string): string[] => user.filter(([k]) => k === key).map(([, v]) => v);
  const classes = (key: string): string[] => values(key).flatMap((v) => v.split(',').map((c) => c.trim()));

  it('turns AMI on for loopback only, without HTTP', () => {
    expect(general.get('enabled')).toBe('yes');
    expect(general.get('bindaddr')).toBe('127.0.0.1');
    expect(general.get('webenabled') ?? 'no').toBe('no');
    expect(general.has('tlsenable') ? general.get('tlsbindaddr') : undefined).toBeUndefined();
  });

  it('has one user, vnum, reachable from 127.0.0.1 alone: deny everything, then permit that one address', () => {
    expect(users).toEqual(['vnum']);
    const acl = user.filter(([k]) => k === 'deny' || k === 'permit' || k === 'acl');
    expect(acl).toEqual([
      ['deny', '0.0.0.0/0.0.0.0'],
      ['permit', '127.0.0.1/255.255.255.255'],
    ]);
  });

  it('reads only call events and writes only call (Hangup) and reporting (CoreSettings, CoreShowChannels)', () => {
    expect(values('read')).toHaveLength(1);
    expect(values('write')).toHaveLength(1);
    const read = classes('read');
    const write = classes('write');
    for (const c of [...read, ...write]) expect(AMI_CLASSES.has(c), c).toBe(true);
    expect(read).toEqual(['call']);
    expect(write.sort()).toEqual(['call', 'reporting']);
    // Never anything that runs commands, places calls, rewrites config, or sees every variable and AGI command.
    for (const c of ['all', 'originate', 'command', 'system', 'config', 'agent', 'user', 'message', 'aoc', 'agi', 'dialplan']) {
      expect(write, c).not.toContain(c);
      expect(read, c).not.toContain(c);
    }
  });

  it('passes on only call events, by name', () => {
    const filters = user.filter(([k]) => k.startsWith('eventfilter'));
    expect(filters.length).toBeGreaterThan(0);
    for (const [key, value] of filters) {
      const m = /^eventfilter\(action\(include\),name\(([A-Za-z]+)\)\)$/.exec(key);
      expect(m, key).not.toBeNull();
      expect(CALL_EVENTS.has(m![1]!), m![1]).toBe(true);
      expect(value).toBe('');
    }
  });

  it('ships no usable secret: a placeholder the operator must replace', () => {
    expect(values('secret')).toHaveLength(1);
    expect(values('secret')[0]).toMatch(/change-me/);
    expect(readFileSync(SAMPLE, 'utf8')).toMatch(/CHANGE THIS/);
  });
});

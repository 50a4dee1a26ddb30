import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VNUM_BIN, vnum } from '../helpers/cli.js';
import { placeCall } from './agi-fake-asterisk.js';

let dir: string;
let db: string;
let server: ChildProcess | undefined;
let stderr = '';

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-serve-'));
  db = join(dir, 'vnum.db');
  stderr = '';
});
afterEach(() => {
  server?.kill('SIGKILL');
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function serve(port: number, env: Record<string, string> = {}): Promise<void> {
  server = spawn(process.execPath, [VNUM_BIN, '--db', db, 'serve', '--port', String(port)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  server.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const deadline = Date.now() + 10_000;
  while (!stderr.includes('routing from this store')) {
    if (server.exitCode !== null || Date.now() > deadline) throw new Error(`vnum serve did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const A = '+447911000001';
const D = '+447911000002';

describe('vnum serve (built executable)', () => {
  it('answers FastAGI calls from the store with the same decision as vnum route, and stops cleanly on SIGTERM', async () => {
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001']).code).toBe(0);
    const session = JSON.parse(vnum(['--db', db, 'session', 'create', 'o1', A, D, '--json']).stdout);
    const dMasked = session.parties[1].maskedAs as string;
    const aMasked = session.parties[0].maskedAs as string;
    const port = await freePort();
    await serve(port, { VNUM_DEFAULT_COUNTRY: 'GB' });

    const bridge = await placeCall(port, { agi_callerid: A, agi_extension: dMasked, agi_dnid: dMasked });
    expect(bridge.command).toBe(`EXEC MSet "VNUM_STATUS=BRIDGE,VNUM_TARGET=${D},VNUM_CLI=${aMasked},VNUM_SESSION=o1"`);
    // National caller format, DID without '+': the same bridge.
    const national = await placeCall(port, { agi_callerid: '07911000001', agi_extension: dMasked.slice(1) });
    expect(national.command).toBe(bridge.command);
    const stranger = await placeCall(port, { agi_callerid: '+447911000099', agi_extension: dMasked });
    expect(stranger.command).toBe('EXEC MSet "VNUM_STATUS=NO_SESSION,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION="');
    const hostile = await placeCall(port, { agi_callerid: `${A}&PJSIP/evil`, agi_extension: dMasked });
    expect(hostile.command).toBe('EXEC MSet "VNUM_STATUS=INVALID,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION="');
    // The router sees a release made by another process at once.
    expect(vnum(['--db', db, 'session', 'release', 'o1', '--grace', '0s']).code).toBe(0);
    const ended = await placeCall(port, { agi_callerid: A, agi_extension: dMasked });
    expect(ended.command).toBe('EXEC MSet "VNUM_STATUS=ENDED,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION=o1"');

    const exited = new Promise<number | null>((resolve) => server!.on('exit', (code) => resolve(code)));
    server!.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toContain('vnum router stopped');
    // No real number in full in any log line.
    expect(stderr).not.toMatch(/7911000001|7911000002/);
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
      expect(busy.stderr).toMatch(new RegExp(`cannot listen on 127.0.0.1:${port}`));
    } finally {
      taken.close();
    }
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vnum } from '../support/cli.js';
import { placeCall } from '../support/fake-asterisk.js';
import { freePort } from '../support/net.js';
import { startServe, type Serve } from '../support/serve.js';

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
    expect(stranger.command).toBe('EXEC MSet "VNUM_STATUS=NO_SESSION,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION="');
    const hostile = await placeCall(port, { agi_callerid: `${A}&PJSIP/evil`, agi_extension: dMasked });
    expect(hostile.command).toBe('EXEC MSet "VNUM_STATUS=INVALID,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION="');
    // The router sees a release made by another process at once.
    expect(vnum(['--db', db, 'session', 'release', 'o1', '--grace', '0s']).code).toBe(0);
    const ended = await placeCall(port, { agi_callerid: A, agi_extension: dMasked });
    expect(ended.command).toBe('EXEC MSet "VNUM_STATUS=ENDED,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION=o1"');

    expect(await server.stop()).toBe(0);
    const log = server.lines().join('\n');
    expect(log).toContain('vnum router stopped');
    // No real number in full in any log line.
    expect(log).not.toMatch(/7911000001|7911000002/);
  });

  it('refuses to start on an unusable database or a taken port, with exit 2 and 1', async () => {
    writeFileSync(db, 'not a database, not a database, not a database, not a database, not a database');
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

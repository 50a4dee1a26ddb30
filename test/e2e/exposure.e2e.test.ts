/**
 * End to end: dialplan/manager.sample.conf loaded into a real
 * Asterisk 22 (only the secret replaced) keeps AMI to loopback: nothing
 * listens on another address, a login from another local address (127.0.0.2)
 * is refused with the right secret, and from 127.0.0.1 the user gets exactly
 * the classes the sample grants (Originate and Command refused, Hangup and
 * CoreSettings allowed).
 *
 * What the user receives during real calls, and vnum serve's own use of it,
 * are in ami.e2e.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { chownSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Asterisk, renderConfig } from '../support/asterisk/asterisk.js';
import { rawAmi, type RawAmi } from '../support/raw-ami.js';
import { repoRoot } from '../support/repo.js';
import { e2eSuite } from '../support/suite.js';

const SECRET = randomBytes(24).toString('hex');
const AMI_PORT = 5038;

/** A raw AMI session from `localAddress` to `host`: the banner, then one response per action sent. */
const ami = (localAddress: string, host = '127.0.0.1'): Promise<RawAmi> => rawAmi({ port: AMI_PORT, host, localAddress });

e2eSuite('AMI exposure with dialplan/manager.sample.conf (Asterisk 22)', () => {
  let asterisk: Asterisk;

  beforeAll(async () => {
    asterisk = await Asterisk.start();
    // The sample as an operator installs it: only the secret is theirs.
    const sample = readFileSync(path.join(repoRoot, 'dialplan/manager.sample.conf'), 'utf8');
    const conf = sample.replace(/^secret\s*=.*$/m, `secret = ${SECRET}`);
    expect(conf).not.toBe(sample);
    const confDir = /^astetcdir => (.+)$/m.exec(renderConfig(asterisk.root, {})['asterisk.conf']!)![1]!;
    // Readable by Asterisk's own user only, as the secret deserves.
    const target = path.join(asterisk.root, confDir, 'manager.conf');
    writeFileSync(target, conf, { mode: 0o640 });
    const [, , uid, gid] = readFileSync(path.join(asterisk.root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('asterisk:'))!.split(':');
    chownSync(target, Number(uid), Number(gid));
    asterisk.cli('manager reload');
    const deadline = Date.now() + 10_000;
    for (;;) {
      const up = await ami('127.0.0.1').then(
        (s) => (s.close(), true),
        () => false,
      );
      if (up) break;
      if (Date.now() > deadline) throw new Error(`AMI did not come up:\n${asterisk.logTail(20)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  afterAll(async () => asterisk?.stop());

  it('listens on 127.0.0.1 only: nothing answers on 127.0.0.2', async () => {
    const error = await ami('127.0.0.2', '127.0.0.2').then(
      (s) => (s.close(), 'connected'),
      (e: NodeJS.ErrnoException) => e.code,
    );
    expect(error).toBe('ECONNREFUSED');
  });

  it('refuses the right secret from another local address (deny all, permit 127.0.0.1)', async () => {
    const session = await ami('127.0.0.2');
    try {
      expect(session.banner).toMatch(/^Asterisk Call Manager\//);
      const login = await session.request(['Action: Login', 'Username: vnum', `Secret: ${SECRET}`, 'Events: off']);
      expect(login).toMatchObject({ Response: 'Error', Message: 'Authentication failed' });
    } finally {
      session.close();
    }
  });

  it('from 127.0.0.1: logs in; Originate, Command, Reload, GetConfig refused; Hangup and CoreSettings allowed', async () => {
    const wrong = await ami('127.0.0.1');
    expect(await wrong.request(['Action: Login', 'Username: vnum', 'Secret: wrong', 'Events: off'])).toMatchObject({ Response: 'Error' });
    wrong.close();
    const session = await ami('127.0.0.1');
    try {
      expect(await session.request(['Action: Login', 'Username: vnum', `Secret: ${SECRET}`, 'Events: off'])).toMatchObject({ Response: 'Success' });
      for (const action of [
        ['Action: Originate', 'Channel: Local/1@default', 'Application: Verbose', 'Data: x'],
        ['Action: Command', 'Command: core show version'],
        ['Action: Reload'],
        ['Action: GetConfig', 'Filename: manager.conf'],
        ['Action: UpdateConfig', 'SrcFilename: manager.conf', 'DstFilename: manager.conf'],
      ]) {
        expect(await session.request(action), action[0]).toMatchObject({ Response: 'Error', Message: 'Permission denied' });
      }
      // Allowed: the answer is about the channel, not the permission.
      const hangup = await session.request(['Action: Hangup', 'Channel: PJSIP/nobody-00000000']);
      expect(hangup.Response).toBe('Error');
      expect(hangup.Message).not.toBe('Permission denied');
      const settings = await session.request(['Action: CoreSettings']);
      expect(settings).toMatchObject({ Response: 'Success' });
      expect(settings.AsteriskVersion).toMatch(/^22\./);
      const user = asterisk.cli('manager show user vnum');
      expect(user).toMatch(/read perm:\s*call\s*$/m);
      expect(user).toMatch(/write perm:\s*call,reporting\s*$/m);
    } finally {
      session.close();
    }
  });
});

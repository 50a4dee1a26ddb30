/**
 * The Asterisk image, without Docker.
 *
 * 1. One install script, two users: docker/asterisk/Dockerfile and the e2e
 *    harness (test/support/asterisk/provision.sh) run the same single file.
 * 2. The image's configuration agrees with the project: the trunk keeps every
 *    identity setting of dialplan/pjsip-trunk.sample.conf, modules.conf loads
 *    every module dialplan/vnum.conf requires, the globals are settings
 *    vnum.conf knows, AMI is off.
 * 3. That configuration, as the Dockerfile lays it out, loads in a real
 *    Asterisk 22 installed by that script: the e2e harness's Debian sid root.
 *    Run as the asterisk user, in a private mount namespace, with only the
 *    test-only changes listed at `testOnly` below.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asteriskBlocker, provision } from '../support/asterisk/provision.js';
import { asteriskRoot } from '../support/asterisk/paths.js';
import { copyParts, execForm, filesUnder, iniSection, parseDockerfile, parseIni, type IniSection } from '../support/ship.js';
import { freePort } from '../support/net.js';
import { describeWhen } from '../support/suite.js';
import { readRepo, repoPath, repoRoot } from '../support/repo.js';

const SCRIPT = 'docker/asterisk/install-asterisk.sh';
const DOCKERFILE = 'docker/asterisk/Dockerfile';
const dockerfile = parseDockerfile(repoPath(DOCKERFILE));
const stage = dockerfile.stages.at(-1)!;

describe('one install script for the Asterisk image and the e2e harness', () => {
  it('exists once in the project', () => {
    // tracked and untracked files, minus what .gitignore keeps out (node_modules, .cache)
    const listed = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: repoRoot, encoding: 'utf8' });
    expect(listed.status).toBe(0);
    const found = listed.stdout.split('\n').filter((f) => path.basename(f).startsWith('install-asterisk'));
    expect([...new Set(found)]).toEqual([SCRIPT]);
  });

  it('test/support/asterisk/provision.sh installs Asterisk in its root with exactly that file, and stamps the root with its hash', () => {
    const text = readRepo('test/support/asterisk/provision.sh');
    const here = path.dirname(repoPath('test/support/asterisk/provision.sh'));
    const repoRel = /^repo=\$\(cd "\$here\/([^"]+)" && pwd\)$/m.exec(text)?.[1];
    const scriptRel = /^install_script="\$repo\/([^"]+)"$/m.exec(text)?.[1];
    expect(repoRel).toBeDefined();
    expect(scriptRel).toBeDefined();
    expect(realpathSync(path.join(here, repoRel!, scriptRel!))).toBe(realpathSync(repoPath(SCRIPT)));
    // copied into the root, then run there by chroot, and hashed for the stamp
    const copy = /^install -m 0755 "\$install_script" "\$build(\/[^"]+)"$/m.exec(text);
    expect(copy).not.toBeNull();
    expect(text).toMatch(new RegExp(`^chroot "\\$build" ${copy![1]!.replace(/[.]/g, '\\.')} `, 'm'));
    expect(text).toMatch(/^want_stamp="install-asterisk\.sh sha256 \$\(sha256sum "\$install_script"/m);
    // The harness's own freshness check hashes the same file.
    expect(readRepo('test/support/asterisk/provision.ts')).toContain(`'${SCRIPT}'`);
  });

  it('docker/asterisk/Dockerfile COPYs that file and RUNs it, and installs nothing else by itself', () => {
    const copies = stage.instructions.filter((i) => i.keyword === 'COPY').map(copyParts);
    const scriptCopies = copies.filter((c) => c.sources.includes(SCRIPT));
    expect(scriptCopies).toHaveLength(1);
    const dest = scriptCopies[0]!.dest;
    const runs = stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.content);
    expect(runs.filter((r) => r.includes(dest))).toEqual([expect.stringMatching(new RegExp(`^bash ${dest.replace(/[.]/g, '\\.')}\\b`))]);
    expect(runs.filter((r) => /apt-get|apt |dpkg|debootstrap/.test(r))).toEqual([]);
    // Debian sid, pinned by a date tag (the Debian images' own serials).
    expect(stage.image).toMatch(/^debian:sid-\d{8}(-slim)?(@sha256:[0-9a-f]{64})?$/);
  });
});

// --- the configuration ---------------------------------------------------------

const etc = (name: string): IniSection[] => parseIni(readRepo('docker/asterisk/etc', name), 'asterisk');

function entries(section: IniSection, skip: string[] = []): Array<[string, string]> {
  return section.entries.filter(([k]) => !skip.includes(k)).sort(([a], [b]) => a.localeCompare(b));
}

/** Modules dialplan/vnum.conf says it needs: the "; Requires:" paragraph of its header. */
function requiredModules(): string[] {
  const head = readRepo('dialplan/vnum.conf').split('\n');
  const start = head.findIndex((l) => l.startsWith('; Requires:'));
  expect(start).toBeGreaterThan(0);
  let text = '';
  for (const line of head.slice(start)) {
    if (!line.startsWith(';')) break;
    text += ` ${line.replace(/^;\s*(Requires:)?/, '')}`;
    if (line.includes('and a stock sounds package')) break;
  }
  return text
    .split(/[,\s]+/)
    .filter((w) => /^(pbx|res|app|func|chan)_[a-z_]+$/.test(w));
}

const loadedModules = (): string[] =>
  etc('modules.conf')
    .flatMap((s) => s.entries)
    .filter(([k]) => k === 'load')
    .map(([, v]) => v);

describe('the image configuration agrees with the project', () => {
  it('the trunk keeps every setting of dialplan/pjsip-trunk.sample.conf, on the container transport', () => {
    const sample = parseIni(readRepo('dialplan/pjsip-trunk.sample.conf'), 'asterisk');
    const image = etc('pjsip-carrier.conf');
    for (const type of ['endpoint', 'aor', 'identify']) {
      expect(entries(iniSection(image, 'carrier', type), ['transport']), type).toEqual(entries(iniSection(sample, 'carrier', type), ['transport']));
    }
    expect(iniSection(image, 'carrier', 'endpoint').entries).toContainEqual(['transport', 'transport-udp']);
    expect(iniSection(image, 'carrier', 'endpoint').entries).toContainEqual(['context', 'vnum-inbound']);
    iniSection(etc('pjsip.conf'), 'transport-udp', 'transport');
  });

  it('modules.conf loads only listed modules, among them every one vnum.conf requires', () => {
    const modules = etc('modules.conf');
    expect(iniSection(modules, 'modules').entries).toContainEqual(['autoload', 'no']);
    const required = requiredModules();
    expect(required.length).toBeGreaterThanOrEqual(13);
    const loaded = loadedModules();
    for (const m of required) expect(loaded, m).toContain(`${m}.so`);
  });

  it('extensions.conf includes vnum.conf, which the image takes unchanged from dialplan/, and sets only settings vnum.conf reads', () => {
    const ext = etc('extensions.conf');
    expect(ext.flatMap((s) => s.entries).filter(([k]) => k === '#include')).toEqual([['#include', 'vnum.conf']]);
    const copies = stage.instructions.filter((i) => i.keyword === 'COPY').map(copyParts);
    expect(copies).toContainEqual({ sources: ['dialplan/vnum.conf'], dest: '/etc/asterisk/vnum.conf' });
    expect(existsSync(repoPath('docker/asterisk/etc/vnum.conf'))).toBe(false); // no second copy to drift
    const known = [...readRepo('dialplan/vnum.conf').matchAll(/Gosub\(vnum-setting,s,1\((VNUM_[A-Z_]+),/g)].map((m) => m[1]);
    const globals = iniSection(ext, 'globals').entries.map(([k]) => k).filter((k) => k !== '#include');
    expect(globals.length).toBeGreaterThan(0);
    for (const g of globals) expect(known, g).toContain(g);
  });

  it('AMI is off (placeholder until issue 6 adds the router user)', () => {
    expect(iniSection(etc('manager.conf'), 'general').entries).toEqual([['enabled', 'no']]);
  });

  it('runs Asterisk as its own user in the foreground', () => {
    const user = stage.instructions.filter((i) => i.keyword === 'USER').at(-1)?.content.trim();
    expect(user).toBe('asterisk:asterisk');
    expect(execForm(stage.instructions.find((i) => i.keyword === 'CMD')!.content)).toEqual(['/usr/sbin/asterisk', '-f']);
  });
});

// --- loading it in a real Asterisk 22 -----------------------------------------

const hasUnshare = spawnSync('sh', ['-c', 'command -v unshare'], { encoding: 'utf8' }).status === 0;
const blocker = asteriskBlocker() ?? (hasUnshare ? null : 'unshare (util-linux) is not installed');

const ID = `vnum-ship-check-${process.pid}`;
const CONF = `/etc/${ID}`; // inside the root
const STATE = `/var/tmp/${ID}`;
const hostPath = (p: string) => path.join(asteriskRoot, p);
let asterisk: ChildProcess | undefined;
let consoleOut = '';
let sipPort = 0;
/** What differs from the image, and why: nothing else does. */
const testOnly: string[] = [];

function ids(): { uid: number; gid: number } {
  const line = readFileSync(hostPath('etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('asterisk:'))!;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function remote(command: string): { status: number | null; out: string } {
  const r = spawnSync('chroot', [asteriskRoot, '/usr/sbin/asterisk', '-C', `${CONF}/asterisk.conf`, '-rx', command], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function cli(command: string): string {
  const r = remote(command);
  if (r.status !== 0) throw new Error(`asterisk -rx '${command}': ${r.out}`);
  return r.out;
}

/** The Dockerfile's configuration steps after the install, with /etc/asterisk mapped to CONF. */
function layOutConfiguration(): void {
  const { gid } = ids();
  // What the install script left in /etc/asterisk: the root's, owners and modes kept.
  cpSync(hostPath('etc/asterisk'), hostPath(CONF), { recursive: true, preserveTimestamps: true });
  for (const f of readdirSync(hostPath('etc/asterisk'))) {
    const s = statSync(hostPath(`etc/asterisk/${f}`));
    chownSync(hostPath(`${CONF}/${f}`), s.uid, s.gid);
  }
  const { uid: dirUid, gid: dirGid } = statSync(hostPath('etc/asterisk'));
  chownSync(hostPath(CONF), dirUid, dirGid);
  const installed = stage.instructions.findIndex((i) => i.keyword === 'RUN' && i.content.includes('install-asterisk.sh'));
  const map = (text: string) => text.replace(/\/etc\/asterisk(?=\/|\s|$)/g, hostPath(CONF));
  for (const i of stage.instructions.slice(installed + 1)) {
    if (i.keyword === 'COPY') {
      const { sources, dest } = copyParts(i);
      if (!dest.startsWith('/etc/asterisk')) continue; // documentation
      for (const source of sources) {
        const target = dest.endsWith('/') ? path.join(map(dest), source.endsWith('/') ? '' : path.basename(source)) : map(dest);
        for (const file of filesUnder(repoPath(source))) {
          const into = source.endsWith('/') ? path.join(target, path.relative(repoPath(source), file)) : target;
          cpSync(file, into);
          if (i.flags.chown === 'root:asterisk') chownSync(into, 0, gid);
          else if (i.flags.chown !== undefined) throw new Error(`COPY --chown=${i.flags.chown}: not replayed by this check`);
        }
      }
    } else if (i.keyword === 'RUN') {
      const cmd = map(i.content);
      const unmapped = cmd.split(hostPath(CONF)).join('CONF').match(/(^|\s)\/\S*/g);
      if (unmapped) throw new Error(`RUN touches ${unmapped.join(', ')}, which this check does not map: ${i.content}`);
      const r = spawnSync('sh', ['-ec', cmd], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`RUN ${i.content}: ${r.stderr}`);
    }
  }
}

function rewrite(file: string, from: string | RegExp, to: string, why: string): void {
  const full = hostPath(`${CONF}/${file}`);
  const text = readFileSync(full, 'utf8');
  const next = text.replace(from, to);
  if (next === text) throw new Error(`${file}: nothing to rewrite for ${String(from)}`);
  writeFileSync(full, next);
  testOnly.push(`${file}: ${why}`);
}

describeWhen(
  blocker,
  'the image configuration in Asterisk 22 from the same install script',
  () => {
    beforeAll(async () => {
      await provision(); // reuses the cached root when its stamp matches the script
      rmSync(hostPath(CONF), { recursive: true, force: true });
      rmSync(hostPath(STATE), { recursive: true, force: true });
      layOutConfiguration();
      const { uid, gid } = ids();
      for (const sub of ['', 'lib', 'spool', 'run', 'log', 'cache']) {
        mkdirSync(hostPath(`${STATE}/${sub}`), { recursive: true });
        chownSync(hostPath(`${STATE}/${sub}`), uid, gid);
      }
      // Test-only changes. Directories: beside the harness's, not over the image's.
      const dirs = `[directories]\nastetcdir => ${CONF}\nastdbdir => ${STATE}/lib\nastkeydir => ${STATE}/lib\nastspooldir => ${STATE}/spool\nastrundir => ${STATE}/run\nastlogdir => ${STATE}/log\nastcachedir => ${STATE}/cache\n\n`;
      rewrite('asterisk.conf', /^/, dirs, 'a [directories] section for a private etc/run/log folder (the image has none: Debian defaults)');
      sipPort = await freePort();
      rewrite('pjsip.conf', 'bind = 0.0.0.0:5060', `bind = 127.0.0.1:${sipPort}`, 'SIP on a free loopback port, not on every interface');
      const deadPort = await freePort();
      rewrite('pjsip-carrier.conf', 'contact = sip:198.51.100.20:5060', `contact = sip:127.0.0.1:${deadPort}`, 'qualify OPTIONS go to loopback, never to the documentation address');
      rewrite('pjsip-carrier.conf', 'match = 198.51.100.20', 'match = 127.0.0.1', 'identify the carrier on loopback');

      asterisk = spawn(
        'unshare',
        ['--mount', '--propagation', 'private', '--', 'sh', '-c',
          'mount -t proc proc "$1/proc" && exec chroot --userspec="$2" "$1" /usr/sbin/asterisk -f -C "$3/asterisk.conf"',
          'sh', asteriskRoot, `${ids().uid}:${ids().gid}`, CONF],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      asterisk.stdout!.on('data', (d: Buffer) => (consoleOut += d.toString()));
      asterisk.stderr!.on('data', (d: Buffer) => (consoleOut += d.toString()));
      const deadline = Date.now() + 30_000;
      while (remote('core waitfullybooted').status !== 0) {
        if (asterisk.exitCode !== null || Date.now() > deadline) throw new Error(`Asterisk did not boot:\n${consoleOut}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }, 15 * 60_000);

    afterAll(async () => {
      if (asterisk && asterisk.exitCode === null) {
        remote('core stop now');
        const exited = new Promise((r) => asterisk!.once('exit', r));
        const late = setTimeout(() => asterisk?.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(late);
      }
      rmSync(hostPath(CONF), { recursive: true, force: true });
      rmSync(hostPath(STATE), { recursive: true, force: true });
    });

    it('changed nothing but the listed test-only settings', () => {
      expect(testOnly).toHaveLength(4);
    });

    it('runs every module modules.conf loads', () => {
      const shown = cli('module show');
      const notRunning = loadedModules().filter((m) => !new RegExp(`^${m.replace('.', '\\.')}\\s.*Running`, 'm').test(shown));
      expect(notRunning).toEqual([]);
    });

    it('boots without a WARNING or ERROR in its log', () => {
      const log = readFileSync(hostPath(`${STATE}/log/full`), 'utf8');
      expect(log).toMatch(/NOTICE\[\d+\] loader\.c: \d+ modules will be loaded/); // the log is this boot's
      expect(log.split('\n').filter((l) => /\b(WARNING|ERROR)\[/.test(l))).toEqual([]);
    });

    it('has the vnum-inbound dialplan with the image globals', () => {
      expect(cli('dialplan show vnum-inbound')).toMatch(/'_\[\+0-9\]\.' =>\s+1\. NoOp\(vnum: call for a virtual number\)/);
      const globals = cli('dialplan show globals');
      for (const [k, v] of iniSection(etc('extensions.conf'), 'globals').entries.filter(([k]) => k !== '#include')) {
        expect(globals).toContain(`${k}=${v}`);
      }
    });

    it('has the carrier endpoint in vnum-inbound with identity headers off, on the container transport', () => {
      const endpoint = cli('pjsip show endpoint carrier');
      expect(endpoint).toMatch(/^\s*context\s+: vnum-inbound$/m);
      for (const key of ['send_pai', 'send_rpid', 'trust_id_inbound', 'trust_id_outbound', 'send_diversion', 'send_history_info', 'allow_transfer']) {
        expect(endpoint, key).toMatch(new RegExp(`^\\s*${key}\\s+: (false|no)$`, 'm'));
      }
      expect(endpoint).toMatch(/^\s*send_connected_line\s+: (false|no)$/m);
      expect(cli('pjsip show transports')).toContain(`127.0.0.1:${sipPort}`);
    });

    it('has AMI switched off', () => {
      expect(cli('manager show settings')).toMatch(/Manager \(AMI\):\s+No/);
    });
  },
);

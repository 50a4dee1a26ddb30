/**
 * The Asterisk image, without Docker.
 *
 * 1. One install script, two users: docker/asterisk/Dockerfile and the e2e
 *    harness (test/support/asterisk/provision.sh) run the same single file.
 * 2. The image's configuration agrees with the project: the trunk keeps every
 *    identity setting of dialplan/pjsip-trunk.sample.conf, modules.conf loads
 *    every module dialplan/vnum.conf requires, the globals are settings
 *    vnum.conf knows, the AMI user is dialplan/manager.sample.conf's.
 * 3. That configuration, as the Dockerfile lays it out, loads in a real
 *    Asterisk 22 installed by that script: the e2e harness's Debian sid root.
 *    Run as the asterisk user, in a private mount namespace, with only the
 *    test-only changes listed at `testOnly` below; the image's entrypoint
 *    runs as written and turns AMI on, and `vnum serve`, configured as
 *    docker/compose.yaml configures the router, logs in.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { AmiClient } from '../../src/ami/client.js';
import { createLogger } from '../../src/log.js';
import { asteriskBlocker, provision } from '../support/asterisk/provision.js';
import { asteriskRoot } from '../support/asterisk/paths.js';
import { VNUM_BIN } from '../support/cli.js';
import { copyParts, execForm, filesUnder, iniSection, parseDockerfile, parseIni, type IniSection } from '../support/ship.js';
import { freePort } from '../support/net.js';
import { describeWhen } from '../support/suite.js';
import { readRepo, repoPath, repoRoot } from '../support/repo.js';

const SCRIPT = 'docker/asterisk/install-asterisk.sh';
const ENTRYPOINT = '/usr/local/bin/vnum-asterisk-entrypoint';
const ENTRYPOINT_SOURCE = 'docker/asterisk/entrypoint.sh';
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

  it('the AMI user is dialplan/manager.sample.conf\'s, but for what the entrypoint fills in from the compose environment', () => {
    const image = etc('manager.conf');
    const sample = parseIni(readRepo('dialplan/manager.sample.conf'), 'asterisk');
    // What the entrypoint writes (general.conf, user.conf), and only that, differs from the sample.
    const deployment: Record<string, string[]> = { general: ['enabled', 'bindaddr'], vnum: ['secret', 'permit'] };
    const entrypoint = readRepo(ENTRYPOINT_SOURCE);
    const dir = /^dir=\$\{VNUM_AMI_CONF_DIR:-([^}]+)\}$/m.exec(entrypoint)?.[1];
    expect(dir).toBe('/var/lib/asterisk/vnum-ami');
    for (const [section, keys] of Object.entries(deployment)) {
      const file = section === 'general' ? 'general.conf' : 'user.conf';
      expect(iniSection(image, section).entries.filter(([k]) => k === '#tryinclude')).toEqual([['#tryinclude', `${dir}/${file}`]]);
      const written = new RegExp(`printf '([^']*)'[^>\\n]*>"\\$dir/${file.replace('.', '\\.')}"`).exec(entrypoint)?.[1];
      expect(written, `the entrypoint writes ${file}`).toBeDefined();
      // printf's format, with its \n escapes: one `key = value` per line.
      expect(written!.split('\\n').map((line) => /^(\w+) = /.exec(line)?.[1]).filter(Boolean)).toEqual(keys);
      const skip = [...keys, '#tryinclude'];
      expect(entries(iniSection(image, section), skip), section).toEqual(entries(iniSection(sample, section), skip));
    }
    expect(image.map((x) => x.name)).toEqual(['general', 'vnum']);
    // The permit comes after the deny: Asterisk applies the last rule that matches.
    const vnum = iniSection(image, 'vnum').entries.map(([k]) => k);
    expect(vnum.indexOf('deny')).toBeLessThan(vnum.indexOf('#tryinclude'));
  });

  it('the README and the operator guide install the sample manager.conf only where there is none, with the secret from its file, never on a command line', () => {
    const sample = readRepo('dialplan/manager.sample.conf');
    const dir = mkdtempSync(path.join(tmpdir(), 'vnum-ship-manager-'));
    try {
      const secretFile = path.join(dir, 'ami-secret');
      writeFileSync(secretFile, 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4\n');
      for (const doc of ['README.md', 'docs/operator-guide.md']) {
        const text = readRepo(doc);
        expect(text, doc).not.toMatch(/sed[^\n]*secret[^\n]*\$\(cat/); // the secret in sed's argv, visible in ps
        const awk = /sudo awk '([^']+)' \\\n\s+(\S+) (\S+) \\\n\s+\| sudo install -m 0640 -o root -g asterisk \/dev\/stdin \/etc\/asterisk\/manager\.conf/.exec(text);
        expect(awk, `${doc}: the awk | install step`).not.toBeNull();
        expect(awk![2]).toBe('/etc/vnum/ami-secret');
        expect(awk![3]).toMatch(/(^|\/)dialplan\/manager\.sample\.conf$/);
        // Guarded: never over an existing manager.conf.
        const before = text.slice(0, awk!.index);
        expect(before.slice(before.lastIndexOf('\n```sh')), doc).toMatch(/\[ -e \/etc\/asterisk\/manager\.conf \]/);
        // What it makes: the sample, with the secret from the file, and nothing else changed.
        const made = spawnSync('awk', [awk![1]!, secretFile, repoPath('dialplan/manager.sample.conf')], { encoding: 'utf8' });
        expect(made.status).toBe(0);
        expect(made.stdout).toBe(sample.replace(/^secret = .*$/m, 'secret = a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4'));
        // and it never assumes /etc/vnum exists
        expect(text.indexOf('install -d -m 0755 /etc/vnum'), doc).toBeGreaterThan(-1);
        expect(text.indexOf('install -d -m 0755 /etc/vnum')).toBeLessThan(text.indexOf('> /etc/vnum/ami-secret'));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the image starts through the entrypoint, which runs Asterisk in the foreground', () => {
    expect(execForm(stage.instructions.find((i) => i.keyword === 'ENTRYPOINT')!.content)).toEqual([ENTRYPOINT]);
    const copy = stage.instructions.filter((i) => i.keyword === 'COPY').find((i) => copyParts(i).dest === ENTRYPOINT)!;
    expect(copyParts(copy).sources).toEqual([ENTRYPOINT_SOURCE]);
    expect(copy.flags.chmod).toBe('0755');
    expect(readRepo(ENTRYPOINT_SOURCE)).toMatch(/\nexec "\$@"\n$/);
  });

  it('dialplan/README gives the announcements and hang-up causes vnum.conf uses, no more, no fewer', () => {
    const conf = readRepo('dialplan/vnum.conf');
    const readme = readRepo('dialplan/README.md');
    const rows = (header: RegExp) => {
      const table = readme.split('\n\n').map((p) => p.trim()).find((p) => header.test(p.split('\n')[0]!));
      expect(table, String(header)).toBeDefined();
      return table!.split('\n').slice(2).map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()));
    };
    // Refusals: Gosub(vnum-refuse,s,1(sound,cause)), the sound written out or the
    // router's (VNUM_SOUND, VNUM_PIN_FAILED) with the default of the vnum-sound line before it.
    const refusals = new Set(
      [...conf.matchAll(/(?:Gosub\(vnum-sound,s,1\((VNUM_[A-Z_]+),([\w-]+)\)\)\n.*\n?.*)?Gosub\(vnum-refuse,s,1\(([\w-]+|\$\{GOSUB_RETVAL\}),(\d+)\)\)/g)].map(
        (m) => (m[3] === '${GOSUB_RETVAL}' ? `${m[2]} (or ${m[1]}) ${m[4]}` : `${m[3]} ${m[4]}`),
      ),
    );
    expect(refusals.size).toBeGreaterThanOrEqual(3);
    const documented = rows(/^\| case \| announcement \| hang-up cause \| SIP \|$/);
    expect(new Set(documented.map(([, sound, cause]) => `${sound!.replace(/`/g, '')} ${cause}`))).toEqual(refusals);
    // The SIP responses are the ones vnum.conf's own comment gives for each cause.
    const sip = new Map([...conf.matchAll(/(\d+) -> (\d{3})/g)].map((m) => [m[1]!, m[2]!]));
    for (const [, , cause, response] of documented) expect(response, `cause ${cause}`).toBe(sip.get(cause!));
    // A dial without an answer: [vnum-dial-result].
    const dialResult = conf.split('[vnum-dial-result]')[1]!.split('\n[')[0]!;
    const causes = new Map([...dialResult.matchAll(/^exten => ([^,]+),1,Hangup\((\d+)\)$/gm)].map((m) => [m[1]!, m[2]!]));
    expect(causes.size).toBeGreaterThanOrEqual(4);
    const table = rows(/^\| DIALSTATUS \| hang-up cause \|$/);
    const named = new Map(table.map(([status, cause]) => [status!.startsWith('anything else') ? '_[A-Z].' : status!.replace(/`/g, ''), /^\d+/.exec(cause!)![0]]));
    expect(named).toEqual(causes);
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
let amiPort = 0;
let entrypointEnv = '';
const AMI_SECRET = randomBytes(24).toString('hex');
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
      amiPort = await freePort();
      rewrite('manager.conf', /^port = 5038$/m, `port = ${amiPort}`, 'AMI on a free port (the e2e harness\'s Asterisk may hold 5038)');
      rewrite('manager.conf', /\/var\/lib\/asterisk\/vnum-ami\//g, `${STATE}/vnum-ami/`, 'the entrypoint\'s files in the private state folder, not in the shared root');
      // The entrypoint as written, with what docker/compose.yaml gives the Asterisk service,
      // loopback standing in for both addresses on the private network.
      const composeEnv = { VNUM_AMI_SECRET: AMI_SECRET, VNUM_ASTERISK_IP: '127.0.0.1', VNUM_ROUTER_IP: '127.0.0.1' };
      const entry = spawnSync('sh', [repoPath(ENTRYPOINT_SOURCE), 'sh', '-c', 'env'], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, ...composeEnv, VNUM_AMI_CONF_DIR: hostPath(`${STATE}/vnum-ami`) },
      });
      if (entry.status !== 0) throw new Error(`entrypoint: ${entry.stderr}`);
      entrypointEnv = entry.stdout;
      // In the image it runs as asterisk; here as root: hand its files over.
      for (const f of ['', '/general.conf', '/user.conf']) chownSync(hostPath(`${STATE}/vnum-ami${f}`), uid, gid);

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
      expect(testOnly).toHaveLength(6);
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

    it('the entrypoint wrote the AMI user owner-only, and kept the secret from Asterisk\'s environment', () => {
      expect(entrypointEnv).not.toContain(AMI_SECRET);
      for (const f of ['general.conf', 'user.conf']) expect(statSync(hostPath(`${STATE}/vnum-ami/${f}`)).mode & 0o077, f).toBe(0);
      expect(readFileSync(hostPath(`${STATE}/vnum-ami/user.conf`), 'utf8')).toBe(`secret = ${AMI_SECRET}\npermit = 127.0.0.1/255.255.255.255\n`);
    });

    it('has AMI on, on the private address only, with the least-privilege vnum user', () => {
      const settings = cli('manager show settings');
      expect(settings).toMatch(/Manager \(AMI\):\s+Yes/);
      expect(settings).toMatch(new RegExp(`TCP Bindaddress:\\s+127\\.0\\.0\\.1:${amiPort}\\s`));
      expect(settings).toMatch(/Web Manager \(AMI\/HTTP\):\s+No/);
      const user = cli('manager show user vnum');
      expect(user).toMatch(/read perm:\s*call\s*$/m);
      expect(user).toMatch(/write perm:\s*call,reporting\s*$/m);
    });

    it('vnum serve, configured as compose configures the router, logs in: vnum health --require-ami is healthy and names Asterisk 22; Originate and Command are refused', async () => {
      const compose = parse(readRepo('docker/compose.yaml')) as { services: Record<string, { environment: Record<string, string> }> };
      const routerEnv = compose.services.router!.environment;
      const dir = mkdtempSync(path.join(tmpdir(), 'vnum-ship-ami-'));
      const routerPort = await freePort();
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        VNUM_DB: path.join(dir, 'vnum.db'),
        VNUM_AGI_HOST: '127.0.0.1',
        VNUM_AGI_PORT: String(routerPort),
        VNUM_AGI_ALLOW: '127.0.0.1',
        VNUM_AMI_USER: routerEnv.VNUM_AMI_USER,
        VNUM_AMI_HOST: '127.0.0.1',
        VNUM_AMI_PORT: String(amiPort),
        VNUM_AMI_SECRET: AMI_SECRET,
      };
      expect(routerEnv.VNUM_AMI_PORT).toBe('5038'); // the image's, replaced above by the free port
      const router = spawn(process.execPath, [VNUM_BIN, 'serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let log = '';
      router.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      try {
        let report: { healthy: boolean; asterisk: { version: string | null } } | undefined;
        for (let i = 0; i < 100 && !report?.healthy; i++) {
          await new Promise((r) => setTimeout(r, 200));
          const h = spawnSync(process.execPath, [VNUM_BIN, 'health', '--require-ami', '--json'], { env, encoding: 'utf8' });
          if (h.stdout) report = JSON.parse(h.stdout);
        }
        expect(report, log).toMatchObject({ healthy: true, ami: { state: 'logged-in' } });
        expect(report!.asterisk.version).toMatch(/^22\./);
        const ami = new AmiClient({
          host: '127.0.0.1', port: amiPort, username: 'vnum', secret: AMI_SECRET, eventClasses: [], events: [],
          logger: createLogger({ level: 'silent' }), reconnectInitialMs: 100,
        });
        ami.start();
        try {
          for (let i = 0; i < 50 && ami.status().state !== 'logged-in'; i++) await new Promise((r) => setTimeout(r, 100));
          for (const action of ['Originate', 'Command']) {
            await expect(ami.action(action, { Channel: 'Local/1@default', Command: 'core show version' }), action).rejects.toThrow(/Permission denied/);
          }
        } finally {
          await ami.stop();
        }
      } finally {
        router.kill('SIGTERM');
        await new Promise((r) => router.once('exit', r));
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
  },
);

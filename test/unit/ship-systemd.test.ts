/**
 * deploy/systemd/vnum.service: what systemd itself says of it
 * (`systemd-analyze verify`, `systemd-analyze security --offline`), the
 * settings the operator guide promises, and why MemoryDenyWriteExecute= is
 * absent (Node dies under that rule; shown, not assumed).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startVnum } from '../support/cli.js';
import { makeTestPki, send, startProviderServer } from '../support/provider-server.js';
import { readRepo } from '../support/repo.js';
import { envVarsReadByProduct, iniValues, parseIni, type IniSection } from '../support/ship.js';
import { itWhen } from '../support/suite.js';

const UNIT_PATH = 'deploy/systemd/vnum.service';
const unitText = readRepo(UNIT_PATH);
const unit = parseIni(unitText, 'systemd');

function values(section: string, key: string): string[] {
  return unit.filter((s: IniSection) => s.name === section).flatMap((s) => s.entries.filter(([k]) => k === key).map(([, v]) => v));
}
function value(section: string, key: string): string | undefined {
  return values(section, key).at(-1);
}

function seconds(span: string): number {
  const m = /^(\d+)(ms|s|min)?$/.exec(span.trim());
  if (!m) throw new Error(`time span this check does not read: ${span}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'min' ? n * 60 : n;
}

const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
const noAnalyzeReason = analyze ? null : 'systemd-analyze is not installed here (Debian: apt-get install systemd)';

const scratch = mkdtempSync(path.join(tmpdir(), 'vnum-ship-systemd-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * The unit as shipped, except ExecStart's program: `systemd-analyze verify`
 * insists that it exists, and /usr/local/bin/vnum is created by the install
 * (docker/router/install-vnum.sh ... /usr/local/bin), not on a CI machine. A
 * stand-in executable at a temporary path takes its place; nothing else
 * changes.
 */
function unitForVerify(text: string, name = 'vnum.service'): string {
  const stub = path.join(scratch, 'vnum');
  writeFileSync(stub, '#!/bin/sh\nexit 0\n');
  chmodSync(stub, 0o755);
  const replaced = text.replace(/^ExecStart=\/usr\/local\/bin\/vnum /m, `ExecStart=${stub} `);
  if (replaced === text) throw new Error('ExecStart=/usr/local/bin/vnum not found in the unit');
  const file = path.join(scratch, name);
  writeFileSync(file, replaced);
  return file;
}

/** Units that name each other (a timer and its service) are verified together, from one folder. */
function verify(...files: string[]): { status: number | null; output: string } {
  const r = spawnSync(analyze, ['verify', '--man=no', ...files], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

function exposure(file: string): number {
  const r = spawnSync(analyze, ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8', timeout: 60_000 });
  const m = new RegExp(`Overall exposure level for ${path.basename(file).replace('.', '\\.')}: (\\d+\\.\\d)`).exec(`${r.stdout}${r.stderr}`);
  if (!m) throw new Error(`no exposure level for ${file}: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

describe('deploy/systemd/vnum.service', () => {
  it('runs vnum serve as a dedicated user, restarts on failure, keeps the database in its state directory', () => {
    expect(value('Service', 'ExecStart')).toBe('/usr/local/bin/vnum serve');
    expect(value('Service', 'User')).toBe('vnum');
    expect(value('Service', 'Group')).toBe('vnum');
    expect(value('Service', 'Restart')).toBe('on-failure');
    expect(value('Service', 'StateDirectory')).toBe('vnum');
    expect(value('Service', 'StateDirectoryMode')).toBe('0700');
    expect(values('Service', 'Environment')).toContain('VNUM_DB=/var/lib/vnum/vnum.db');
    expect(value('Install', 'WantedBy')).toBe('multi-user.target');
    // ExecStart is where install-vnum.sh links the CLI, as the unit's header tells.
    expect(unitText).toMatch(/install-vnum\.sh \S+ \S+ \/opt\/vnum \/usr\/local\/bin\n/);
    expect(value('Unit', 'Documentation')).toBe('file:/opt/vnum/docs/operator-guide.md');
    const pkg = JSON.parse(readRepo('package.json')) as { files: string[] };
    expect(pkg.files).toContain('docs/operator-guide.md');
  });

  it('stops with SIGTERM and gives the drain time to finish before SIGKILL', () => {
    expect(value('Service', 'KillSignal')).toBe('SIGTERM');
    const serve = readRepo('src/cli/serve.ts');
    const drain = /flags: '--drain <duration>',[\s\S]*?shown: '(\d+)s'/.exec(serve);
    expect(drain, 'the default --drain in src/cli/serve.ts').not.toBeNull();
    // drain + the longest routing session (--deadline, 2 s) + closing, with room to spare
    expect(seconds(value('Service', 'TimeoutStopSec')!)).toBeGreaterThanOrEqual(2 * (Number(drain![1]) + 2));
  });

  it('is hardened as the operator guide says, without MemoryDenyWriteExecute', () => {
    const required: Record<string, string> = {
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX',
      CapabilityBoundingSet: '',
      UMask: '0077',
    };
    for (const [key, want] of Object.entries(required)) expect(value('Service', key), key).toBe(want);
    expect(values('Service', 'SystemCallFilter')).toContain('@system-service');
    expect(values('Service', 'MemoryDenyWriteExecute')).toEqual([]);
  });

  itWhen(
    noAnalyzeReason,
    `systemd-analyze verify reports nothing at all`,
    () => {
      // verify exits 0 even for unknown keys and bad values (it only prints
      // them, "ignoring"), so any output is a failure.
      const result = verify(unitForVerify(unitText));
      expect(result.output).toBe('');
      expect(result.status).toBe(0);
    },
  );

  itWhen(
    noAnalyzeReason,
    `the AMI credential drop-in the unit documents verifies too, and keeps the exposure`,
    () => {
      // The lines after "#   [Service]" in the unit's AMI comment, as an operator pastes them.
      const comment = unitText.split('\n');
      const start = comment.indexOf('#   [Service]');
      expect(start).toBeGreaterThan(0);
      const dropIn: string[] = [];
      for (const line of comment.slice(start + 1)) {
        const m = /^# {3}(\S.*)$/.exec(line);
        if (!m) break;
        dropIn.push(m[1]!);
      }
      expect(dropIn).toEqual(['LoadCredential=ami-secret:/etc/vnum/ami-secret', 'Environment=VNUM_AMI_SECRET_FILE=%d/ami-secret']);
      const withAmi = unitText.replace('EnvironmentFile=-/etc/vnum/vnum.env\n', `EnvironmentFile=-/etc/vnum/vnum.env\n${dropIn.join('\n')}\n`);
      const result = verify(unitForVerify(withAmi));
      expect(result.output).toBe('');
      expect(exposure(unitForVerify(withAmi))).toBeLessThanOrEqual(1.5);
    },
  );

  itWhen(
    noAnalyzeReason,
    `the verify check can fail: a misspelt key and a bad value are reported`,
    () => {
      const broken = unitText.replace('ProtectSystem=strict', 'ProtectSystem=stricter\nProtectSystm=strict');
      const result = verify(unitForVerify(broken));
      expect(result.output).toMatch(/Unknown key 'ProtectSystm'/);
      expect(result.output).toMatch(/stricter/);
    },
  );

  itWhen(
    noAnalyzeReason,
    `systemd-analyze security --offline rates its exposure 1.5 or lower (of 10)`,
    () => {
      expect(exposure(unitForVerify(unitText))).toBeLessThanOrEqual(1.5);
    },
  );
});

/**
 * MemoryDenyWriteExecute=yes forbids making writable memory executable. The
 * kernel has the same rule as a process flag (PR_SET_MDWE, Linux 6.3+; newer
 * systemd uses it for that very setting). Node run under it: V8's JIT aborts.
 */
const PR_SET_MDWE = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("prctl(PR_SET_MDWE) unsupported: errno %d" % ctypes.get_errno())
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
`;
const python = spawnSync('sh', ['-c', 'command -v python3'], { encoding: 'utf8' }).stdout.trim();
const probe = python ? spawnSync(python, ['-c', PR_SET_MDWE, '/bin/true'], { encoding: 'utf8' }) : null;
const noMdweReason = !python
  ? 'python3 is not installed here (it makes the prctl call)'
  : probe!.status === 77
    ? `this kernel has no PR_SET_MDWE (${probe!.stdout.trim()})`
    : null;

describe('why the unit does not set MemoryDenyWriteExecute', () => {
  itWhen(
    noMdweReason,
    `Node aborts under the kernel's write-xor-execute rule, and runs without it`,
    () => {
      // Enough work for V8 to compile a function (baseline JIT).
      const work = 'let s = 0; for (let i = 0; i < 1e7; i++) s += i; console.log("ran", s)';
      const plain = spawnSync(process.execPath, ['-e', work], { encoding: 'utf8', timeout: 30_000 });
      expect(plain.status).toBe(0);
      expect(plain.stdout).toContain('ran');
      const mdwe = spawnSync(python, ['-c', PR_SET_MDWE, process.execPath, '-e', work], { encoding: 'utf8', timeout: 30_000 });
      expect(mdwe.stdout).not.toContain('ran');
      expect(mdwe.status !== 0 || mdwe.signal !== null).toBe(true);
    },
  );
});

/** The variable names in the first table after `heading` in a markdown file. */
function documentedVariables(file: string, heading: string): Set<string> {
  const text = readRepo(file);
  const after = text.split(heading)[1];
  if (after === undefined) throw new Error(`${file} has no "${heading}"`);
  const table = after.split('\n\n').find((p) => p.trimStart().startsWith('| variable'));
  if (table === undefined) throw new Error(`${file}: no variable table after "${heading}"`);
  return new Set([...table.matchAll(/^\| ([^|]+) \|/gm)].flatMap((m) => [...m[1]!.matchAll(/`(VNUM_[A-Z0-9_]+)`/g)].map((v) => v[1]!)));
}

describe('the documented variables are the ones vnum reads and the unit names', () => {
  const product = [...envVarsReadByProduct()].filter((n) => n.startsWith('VNUM_')).sort();
  const guide = documentedVariables('docs/operator-guide.md', 'Settings go in `/etc/vnum/vnum.env`');
  const readme = documentedVariables('README.md', '## Configuration');

  it('every VNUM_ variable vnum reads is in the operator guide\'s table and the README\'s, and they list nothing else', () => {
    expect(product.length).toBeGreaterThan(10);
    expect([...guide].sort()).toEqual(product);
    expect([...readme].sort()).toEqual(product);
  });

  it('every VNUM_ variable the unit names, set or in its comments, is one of them', () => {
    // Error codes (VNUM_CONFIGURATION, ...) are not variables.
    const codes = new Set([...readRepo('src/errors.ts').matchAll(/'(VNUM_[A-Z_]+)'/g)].map((m) => m[1]!));
    const named = new Set([...unitText.matchAll(/\b(VNUM_[A-Z0-9_]+)\b/g)].map((m) => m[1]!).filter((n) => !codes.has(n)));
    expect(named.size).toBeGreaterThan(5);
    for (const name of named) expect(product, `${name} (deploy/systemd/vnum.service)`).toContain(name);
    // The AMI ones in particular: how to turn it on is in the unit itself.
    for (const name of ['VNUM_AMI_USER', 'VNUM_AMI_HOST', 'VNUM_AMI_PORT', 'VNUM_AMI_SECRET_FILE']) expect(named, name).toContain(name);
  });

  it('the unit defaults in the guide\'s table are the unit\'s own', () => {
    const text = readRepo('docs/operator-guide.md').split('Settings go in `/etc/vnum/vnum.env`')[1]!;
    for (const line of values('Service', 'Environment')) {
      const [name, value] = line.split('=', 2) as [string, string];
      expect(text, name).toMatch(new RegExp(`\\| \`${name}\` \\| \`${value.replace(/[.]/g, '\\.')}\` \\|`));
    }
  });
});

/**
 * The nightly provider sync: deploy/systemd/vnum-sync.service (a oneshot
 * `vnum pool sync`) and vnum-sync.timer. systemd's own checks, the settings
 * the operator guide promises, and the command line as systemd expands it,
 * run against a real HTTPS export with the token from a credential.
 */
describe('deploy/systemd/vnum-sync.service and vnum-sync.timer', () => {
  const syncText = readRepo('deploy/systemd/vnum-sync.service');
  const timerText = readRepo('deploy/systemd/vnum-sync.timer');
  const sync = parseIni(syncText, 'systemd');
  const timer = parseIni(timerText, 'systemd');
  const syncValue = (key: string) => iniValues(sync, 'Service', key).at(-1);

  it('syncs once as the router\'s user, on the router\'s database, the token from a credential and never in the unit', () => {
    expect(syncValue('Type')).toBe('oneshot');
    expect(syncValue('User')).toBe('vnum');
    expect(syncValue('Group')).toBe('vnum');
    expect(syncValue('ExecStart')).toBe('/usr/local/bin/vnum pool sync --retire-missing ${PROVIDER_EXPORT} $SYNC_OPTIONS');
    expect(iniValues(sync, 'Service', 'Environment')).toContain('VNUM_DB=/var/lib/vnum/vnum.db');
    expect(values('Service', 'Environment')).toContain('VNUM_DB=/var/lib/vnum/vnum.db');
    expect(syncValue('StateDirectory')).toBe(value('Service', 'StateDirectory'));
    expect(iniValues(sync, 'Service', 'EnvironmentFile')).toEqual(['-/etc/vnum/vnum.env', '/etc/vnum/sync.env']);
    expect(syncValue('LoadCredential')).toBe('sync-token:/etc/vnum/sync-token');
    expect(iniValues(sync, 'Service', 'Environment')).toContain('VNUM_SYNC_TOKEN_FILE=%d/sync-token');
    expect(syncText).not.toMatch(/^Environment=VNUM_SYNC_TOKEN=/m);
    expect(iniValues(sync, 'Unit', 'Documentation')).toEqual(['file:/opt/vnum/docs/operator-guide.md']);
    // It names no [Install]: the timer starts it.
    expect(sync.some((s) => s.name === 'Install')).toBe(false);
  });

  it('is hardened as vnum.service is, all but the router\'s loopback-only IP fence', () => {
    const routerOnly = new Set(['ExecStart', 'Type', 'Environment', 'EnvironmentFile', 'Restart', 'RestartSec', 'KillSignal', 'TimeoutStopSec', 'IPAddressDeny', 'IPAddressAllow']);
    const keys = [...new Set(unit.filter((s) => s.name === 'Service').flatMap((s) => s.entries.map(([k]) => k)))].filter((k) => !routerOnly.has(k));
    expect(keys.length).toBeGreaterThan(25);
    for (const key of keys) expect(iniValues(sync, 'Service', key), key).toEqual(values('Service', key));
  });

  it('the timer starts it every night, at a random minute of a half hour, and catches up a night missed', () => {
    expect(iniValues(timer, 'Timer', 'Unit')).toEqual(['vnum-sync.service']);
    expect(iniValues(timer, 'Timer', 'OnCalendar')).toEqual(['*-*-* 03:30:00']);
    expect(iniValues(timer, 'Timer', 'RandomizedDelaySec')).toEqual(['30min']);
    expect(iniValues(timer, 'Timer', 'Persistent')).toEqual(['true']);
    expect(iniValues(timer, 'Install', 'WantedBy')).toEqual(['timers.target']);
  });

  itWhen(
    noAnalyzeReason,
    'systemd-analyze verify reports nothing for the pair, and rates the service 1.5 or lower',
    () => {
      const service = unitForVerify(syncText, 'vnum-sync.service');
      const timerFile = path.join(scratch, 'vnum-sync.timer');
      writeFileSync(timerFile, timerText);
      const result = verify(service, timerFile);
      expect(result.output).toBe('');
      expect(result.status).toBe(0);
      expect(exposure(service)).toBeLessThanOrEqual(1.5);
      // The check can fail: a timer naming no unit that exists, a calendar systemd cannot read.
      writeFileSync(timerFile, timerText.replace('Unit=vnum-sync.service', 'Unit=vnum-synk.service').replace('03:30:00', '27:30:00'));
      expect(verify(service, timerFile).output).toMatch(/27:30:00|vnum-synk/);
    },
  );

  it('every VNUM_ variable it names is one vnum reads; the two it expands on the command line are not vnum\'s', () => {
    const product = envVarsReadByProduct();
    const codes = new Set([...readRepo('src/errors.ts').matchAll(/'(VNUM_[A-Z_]+)'/g)].map((m) => m[1]!));
    const named = [...syncText.matchAll(/\b(VNUM_[A-Z0-9_]+)\b/g)].map((m) => m[1]!).filter((n) => !codes.has(n));
    expect(named).toContain('VNUM_SYNC_TOKEN_FILE');
    for (const name of named) expect(product, name).toContain(name);
    for (const name of ['PROVIDER_EXPORT', 'SYNC_OPTIONS']) {
      expect(product.has(name), name).toBe(false);
      expect(readRepo('docs/operator-guide.md'), name).toContain(`\`${name}\``);
    }
  });

  it('its command line, expanded as systemd does, syncs a real export over HTTPS with the token from the credential', async () => {
    const pki = makeTestPki();
    const token = 'nightly-7c2e91d0';
    const provider = await startProviderServer(
      {
        '/dids.json': (request, response, s) =>
          request.headers.authorization === `Bearer ${token}`
            ? send(200, 'application/json', JSON.stringify(['+442079460001', '+442079460002']))(request, response, s)
            : send(401, 'text/plain', 'no')(request, response, s),
      },
      pki.leaf,
    );
    try {
      const credentials = mkdtempSync(path.join(scratch, 'credentials-'));
      writeFileSync(path.join(credentials, 'sync-token'), `${token}\n`, { mode: 0o400 });
      // /etc/vnum/sync.env as the guide shows it.
      const syncEnv: Record<string, string> = { PROVIDER_EXPORT: `${provider.origin}/dids.json`, SYNC_OPTIONS: `--ca-file ${pki.caFile}` };
      const db = path.join(scratch, 'sync.db');
      const env: Record<string, string> = {};
      for (const line of iniValues(sync, 'Service', 'Environment')) {
        const [name, text] = line.split(/=(.*)/s) as [string, string];
        env[name] = name === 'VNUM_DB' ? db : text.replace('%d', credentials);
      }
      // ${X}: one word; $X: split at blanks (systemd.service(5), "Command lines").
      const words = syncValue('ExecStart')!
        .split(/\s+/)
        .flatMap((w) => (/^\$\{(\w+)\}$/.test(w) ? [syncEnv[w.slice(2, -1)]!] : /^\$(\w+)$/.test(w) ? syncEnv[w.slice(1)]!.split(/\s+/) : [w]));
      expect(words.slice(0, 1)).toEqual(['/usr/local/bin/vnum']);
      const result = await startVnum(words.slice(1), env).done;
      expect(result.stderr).toBe('');
      expect(result.stdout.split('\n')[0]).toBe(`pool sync: 2 added, 0 retired, 0 updated, 0 unchanged (2 numbers listed in JSON from ${provider.origin}/dids.json)`);
      expect(result.code).toBe(0);
    } finally {
      await provider.close();
      pki.cleanup();
    }
  });
});

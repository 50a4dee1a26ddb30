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
import { parseIni, type IniSection } from '../support/ship.js';
import { itWhen } from '../support/suite.js';
import { readRepo } from '../support/repo.js';

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
function unitForVerify(text: string): string {
  const stub = path.join(scratch, 'vnum');
  writeFileSync(stub, '#!/bin/sh\nexit 0\n');
  chmodSync(stub, 0o755);
  const replaced = text.replace(/^ExecStart=\/usr\/local\/bin\/vnum /m, `ExecStart=${stub} `);
  if (replaced === text) throw new Error('ExecStart=/usr/local/bin/vnum not found in the unit');
  const file = path.join(scratch, 'vnum.service');
  writeFileSync(file, replaced);
  return file;
}

function verify(file: string): { status: number | null; output: string } {
  const r = spawnSync(analyze, ['verify', '--man=no', file], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
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
    const drain = /'--drain <duration>'[^)]*'(\d+)s'\)/.exec(serve);
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
      const r = spawnSync(analyze, ['security', '--offline=yes', '--no-pager', unitForVerify(unitText)], { encoding: 'utf8', timeout: 60_000 });
      const m = /Overall exposure level for vnum\.service: (\d+\.\d)/.exec(`${r.stdout}${r.stderr}`);
      expect(m, `${r.stdout}${r.stderr}`).not.toBeNull();
      expect(Number(m![1])).toBeLessThanOrEqual(1.5);
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

/**
 * deploy/systemd/vnum-api.service: what systemd itself says of it
 * (`systemd-analyze verify`, `systemd-analyze security --offline`), the TLS
 * drop-in its header documents, and the settings the operator guide promises.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { envVarsReadByProduct, parseIni, readRepo, type IniSection } from '../unit/ship-lib.js';

const UNIT_PATH = 'deploy/systemd/vnum-api.service';
const unitText = readRepo(UNIT_PATH);
const unit = parseIni(unitText, 'systemd');

const values = (section: string, key: string): string[] =>
  unit.filter((s: IniSection) => s.name === section).flatMap((s) => s.entries.filter(([k]) => k === key).map(([, v]) => v));
const value = (section: string, key: string): string | undefined => values(section, key).at(-1);

const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
const noAnalyzeReason = analyze ? null : 'systemd-analyze is not installed here (Debian: apt-get install systemd)';
const skipped = noAnalyzeReason ? ` (SKIPPED: ${noAnalyzeReason})` : '';

const scratch = mkdtempSync(path.join(tmpdir(), 'vnum-ship-api-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The unit as shipped with a stand-in for /usr/local/bin/vnum (verify insists that ExecStart's program exists). */
function unitForVerify(text: string): string {
  const stub = path.join(scratch, 'vnum');
  writeFileSync(stub, '#!/bin/sh\nexit 0\n');
  chmodSync(stub, 0o755);
  const replaced = text.replace(/^ExecStart=\/usr\/local\/bin\/vnum /m, `ExecStart=${stub} `);
  if (replaced === text) throw new Error('ExecStart=/usr/local/bin/vnum not found in the unit');
  const file = path.join(scratch, 'vnum-api.service');
  writeFileSync(file, replaced);
  return file;
}

function verify(file: string): string {
  const r = spawnSync(analyze, ['verify', '--man=no', file], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(0);
  return `${r.stdout}${r.stderr}`.trim();
}

function exposure(file: string): number {
  const r = spawnSync(analyze, ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8', timeout: 60_000 });
  const m = /Overall exposure level for vnum-api\.service: (\d+\.\d)/.exec(`${r.stdout}${r.stderr}`);
  expect(m, `${r.stdout}${r.stderr}`).not.toBeNull();
  return Number(m![1]);
}

/** The lines after "#   [Service]" in the unit's TLS comment, as an operator pastes them. */
function tlsDropIn(): string[] {
  const lines = unitText.split('\n');
  const start = lines.indexOf('#   [Service]');
  expect(start).toBeGreaterThan(0);
  const dropIn: string[] = [];
  for (const line of lines.slice(start + 1)) {
    const m = /^# {3}(\S.*)$/.exec(line);
    if (!m) break;
    dropIn.push(m[1]!);
  }
  return dropIn;
}

describe('deploy/systemd/vnum-api.service', () => {
  it('runs vnum api as the router\'s user on the router\'s database, on loopback, after the router', () => {
    expect(value('Service', 'ExecStart')).toBe('/usr/local/bin/vnum api');
    expect(value('Service', 'User')).toBe('vnum');
    expect(value('Service', 'StateDirectory')).toBe('vnum');
    expect(values('Service', 'Environment')).toContain('VNUM_DB=/var/lib/vnum/vnum.db');
    expect(values('Service', 'Environment')).toContain('VNUM_API_HOST=127.0.0.1');
    expect(value('Service', 'IPAddressAllow')).toBe('localhost');
    expect(value('Unit', 'After')).toMatch(/\bvnum\.service\b/);
    expect(value('Install', 'WantedBy')).toBe('multi-user.target');
    // the router keeps the CPU first when both run short
    expect(Number(value('Service', 'CPUWeight'))).toBeLessThan(100);
    const pkg = JSON.parse(readRepo('package.json')) as { files: string[] };
    expect(pkg.files).toContain(UNIT_PATH);
  });

  it('names only variables vnum reads, and stops within the drain', () => {
    const read = envVarsReadByProduct();
    for (const line of [...values('Service', 'Environment'), ...tlsDropIn().filter((l) => l.startsWith('Environment='))]) {
      const name = line.replace(/^Environment=/, '').split('=')[0]!;
      expect(read, name).toContain(name);
    }
    const drain = /API_DEFAULTS = Object\.freeze\(\{[^}]*drain: '(\d+)s'/.exec(readRepo('src/cli/api.ts'));
    expect(drain).not.toBeNull();
    expect(value('Service', 'KillSignal')).toBe('SIGTERM');
    expect(Number(value('Service', 'TimeoutStopSec')!.replace(/s$/, ''))).toBeGreaterThan(2 * Number(drain![1]));
  });

  it.skipIf(noAnalyzeReason !== null)(`systemd-analyze verify reports nothing, and its exposure is 1.5 or lower${skipped}`, () => {
    const file = unitForVerify(unitText);
    expect(verify(file)).toBe('');
    expect(exposure(file)).toBeLessThanOrEqual(1.5);
  });

  it.skipIf(noAnalyzeReason !== null)(`the TLS drop-in the unit documents verifies too, and keeps the exposure low${skipped}`, () => {
    const dropIn = tlsDropIn();
    expect(dropIn[0]).toBe('LoadCredential=api-tls-key:/etc/vnum/api-tls.key');
    expect(dropIn).toContain('Environment=VNUM_API_TLS_KEY=%d/api-tls-key');
    const withTls = unitText.replace('EnvironmentFile=-/etc/vnum/api.env\n', `EnvironmentFile=-/etc/vnum/api.env\n${dropIn.join('\n')}\n`);
    const file = unitForVerify(withTls);
    expect(verify(file)).toBe('');
    expect(exposure(file)).toBeLessThanOrEqual(2.5);
  });
});

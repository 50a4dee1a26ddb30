/**
 * deploy/systemd/vnum-api.service: what systemd itself says of it
 * (`systemd-analyze verify`, `systemd-analyze security --offline`), the TLS
 * drop-in its header documents, and the settings the operator guide promises.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readRepo } from '../support/repo.js';
import { envVarsReadByProduct, noSystemdAnalyze, parseIni, systemdCheck, type IniSection } from '../support/ship.js';
import { itWhen } from '../support/suite.js';

const UNIT_PATH = 'deploy/systemd/vnum-api.service';
const unitText = readRepo(UNIT_PATH);
const unit = parseIni(unitText, 'systemd');

const values = (section: string, key: string): string[] =>
  unit.filter((s: IniSection) => s.name === section).flatMap((s) => s.entries.filter(([k]) => k === key).map(([, v]) => v));
const value = (section: string, key: string): string | undefined => values(section, key).at(-1);

const systemd = systemdCheck('vnum-api.service');
afterAll(() => systemd.remove());

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

  itWhen(noSystemdAnalyze, 'systemd-analyze verify reports nothing, and its exposure is 1.5 or lower', () => {
    const file = systemd.unitFile(unitText);
    expect(systemd.verify(file)).toEqual({ status: 0, output: '' });
    expect(systemd.exposure(file)).toBeLessThanOrEqual(1.5);
  });

  itWhen(noSystemdAnalyze, 'the TLS drop-in the unit documents verifies too, and keeps the exposure low', () => {
    const dropIn = tlsDropIn();
    expect(dropIn[0]).toBe('LoadCredential=api-tls-key:/etc/vnum/api-tls.key');
    expect(dropIn).toContain('Environment=VNUM_API_TLS_KEY=%d/api-tls-key');
    const withTls = unitText.replace('EnvironmentFile=-/etc/vnum/api.env\n', `EnvironmentFile=-/etc/vnum/api.env\n${dropIn.join('\n')}\n`);
    const file = systemd.unitFile(withTls);
    expect(systemd.verify(file)).toEqual({ status: 0, output: '' });
    expect(systemd.exposure(file)).toBeLessThanOrEqual(2.5);
  });
});

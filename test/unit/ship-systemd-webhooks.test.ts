/**
 * deploy/systemd/vnum-webhooks.service: what systemd itself says of it
 * (`systemd-analyze verify`, `systemd-analyze security --offline`), and the
 * settings the operator guide promises: the deliverer as the vnum user on
 * vnum.service's database, its secret as a credential, time to finish the
 * requests in flight.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WEBHOOK_DEFAULTS } from '../../src/cli/webhook-settings.js';
import { readRepo } from '../support/repo.js';
import { envVarsReadByProduct, parseIni, unitWithStubbedExec, type IniSection } from '../support/ship.js';
import { itWhen } from '../support/suite.js';

const unitText = readRepo('deploy/systemd/vnum-webhooks.service');
const unit = parseIni(unitText, 'systemd');
const routerUnit = parseIni(readRepo('deploy/systemd/vnum.service'), 'systemd');

function values(ini: IniSection[], section: string, key: string): string[] {
  return ini.filter((s) => s.name === section).flatMap((s) => s.entries.filter(([k]) => k === key).map(([, v]) => v));
}
const value = (section: string, key: string) => values(unit, section, key).at(-1);

const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
const noAnalyzeReason = analyze ? null : 'systemd-analyze is not installed here (Debian: apt-get install systemd)';
const scratch = mkdtempSync(path.join(tmpdir(), 'vnum-ship-webhooks-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('deploy/systemd/vnum-webhooks.service', () => {
  it('runs the deliverer as vnum on vnum.service\'s database, its secret a credential, restarted on failure', () => {
    expect(value('Service', 'ExecStart')).toBe('/usr/local/bin/vnum webhooks deliver');
    for (const key of ['User', 'Group', 'StateDirectory', 'StateDirectoryMode', 'UMask', 'EnvironmentFile']) {
      expect(value('Service', key), key).toBe(values(routerUnit, 'Service', key).at(-1));
    }
    expect(values(unit, 'Service', 'Environment')).toEqual(
      expect.arrayContaining(['VNUM_DB=/var/lib/vnum/vnum.db', 'VNUM_WEBHOOK_SECRET_FILE=%d/webhook-secret']),
    );
    expect(value('Service', 'LoadCredential')).toBe('webhook-secret:/etc/vnum/webhook-secret');
    expect(value('Service', 'Restart')).toBe('on-failure');
    // Every VNUM_ variable it names is one vnum reads (error codes, VNUM_CONFIGURATION, are not variables).
    const product = envVarsReadByProduct();
    const codes = new Set([...readRepo('src/errors.ts').matchAll(/'(VNUM_[A-Z_]+)'/g)].map((m) => m[1]!));
    const named = (unitText.match(/\bVNUM_[A-Z0-9_]+\b/g) ?? []).filter((n) => !codes.has(n));
    expect(named).toContain('VNUM_WEBHOOK_URL');
    for (const name of named) expect(product, name).toContain(name);
  });

  it('gives requests in flight their timeout before SIGKILL', () => {
    expect(value('Service', 'KillSignal')).toBe('SIGTERM');
    expect(Number(/^(\d+)s$/.exec(value('Service', 'TimeoutStopSec')!)![1]) * 1000).toBeGreaterThanOrEqual(2 * WEBHOOK_DEFAULTS.timeoutMs);
  });

  it('is hardened like vnum.service, without MemoryDenyWriteExecute', () => {
    for (const key of ['NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'RestrictAddressFamilies', 'CapabilityBoundingSet']) {
      expect(value('Service', key), key).toBe(values(routerUnit, 'Service', key).at(-1));
    }
    expect(values(unit, 'Service', 'SystemCallFilter')).toEqual(values(routerUnit, 'Service', 'SystemCallFilter'));
    expect(values(unit, 'Service', 'MemoryDenyWriteExecute')).toEqual([]);
  });

  itWhen(noAnalyzeReason, 'systemd-analyze verify reports nothing, and security --offline rates its exposure 1.5 or lower', () => {
    const file = unitWithStubbedExec(unitText, scratch, 'vnum-webhooks.service');
    const verify = spawnSync(analyze, ['verify', '--man=no', file], { encoding: 'utf8', timeout: 60_000 });
    expect(`${verify.stdout}${verify.stderr}`.trim()).toBe('');
    expect(verify.status).toBe(0);
    const security = spawnSync(analyze, ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8', timeout: 60_000 });
    const m = /Overall exposure level for vnum-webhooks\.service: (\d+\.\d)/.exec(`${security.stdout}${security.stderr}`);
    expect(m, `${security.stdout}${security.stderr}`).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(1.5);
  });
});

/**
 * deploy/systemd/vnum-webhooks.service: what systemd itself says of it
 * (`systemd-analyze verify`, `systemd-analyze security --offline`), and the
 * settings the operator guide promises: the deliverer as the vnum user on
 * vnum.service's database, its secret as a credential, time to finish the
 * requests in flight.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { WEBHOOK_DEFAULTS } from '../../src/cli/webhook-settings.js';
import { readRepo } from '../support/repo.js';
import { envVarsReadByProduct, iniValues as values, noSystemdAnalyze, parseIni, systemdCheck } from '../support/ship.js';
import { itWhen } from '../support/suite.js';

const unitText = readRepo('deploy/systemd/vnum-webhooks.service');
const unit = parseIni(unitText, 'systemd');
const routerUnit = parseIni(readRepo('deploy/systemd/vnum.service'), 'systemd');

const value = (section: string, key: string) => values(unit, section, key).at(-1);

const systemd = systemdCheck('vnum-webhooks.service');
afterAll(() => systemd.remove());

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

  itWhen(noSystemdAnalyze, 'systemd-analyze verify reports nothing, and security --offline rates its exposure 1.5 or lower', () => {
    const file = systemd.unitFile(unitText);
    const verify = systemd.verify(file);
    expect(verify.output).toBe('');
    expect(verify.status).toBe(0);
    expect(systemd.exposure(file)).toBeLessThanOrEqual(1.5);
  });
});

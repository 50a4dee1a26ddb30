/**
 * deploy/systemd/vnum-replica.service: what systemd itself says of it
 * (`systemd-analyze verify`, `systemd-analyze security --offline`), with and
 * without the password-file credential it documents, and the settings the
 * operator guide promises: the replica as the vnum user on vnum.service's
 * database, hardened like it, restarted whatever ends it, stopped cleanly.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readRepo } from '../support/repo.js';
import { envVarsReadByProduct, iniValues as values, noSystemdAnalyze, parseIni, systemdCheck } from '../support/ship.js';
import { itWhen } from '../support/suite.js';

const unitText = readRepo('deploy/systemd/vnum-replica.service');
const unit = parseIni(unitText, 'systemd');
const routerUnit = parseIni(readRepo('deploy/systemd/vnum.service'), 'systemd');

const value = (section: string, key: string) => values(unit, section, key).at(-1);

const systemd = systemdCheck('vnum-replica.service');
afterAll(() => systemd.remove());

describe('deploy/systemd/vnum-replica.service', () => {
  it("runs vnum replica as vnum on vnum.service's database, before the router, restarted whatever ends it", () => {
    expect(value('Service', 'ExecStart')).toBe('/usr/local/bin/vnum replica');
    for (const key of ['User', 'Group', 'StateDirectory', 'StateDirectoryMode', 'UMask']) {
      expect(value('Service', key), key).toBe(values(routerUnit, 'Service', key).at(-1));
    }
    expect(values(unit, 'Service', 'Environment')).toContain('VNUM_DB=/var/lib/vnum/vnum.db');
    expect(values(routerUnit, 'Service', 'Environment')).toContain('VNUM_DB=/var/lib/vnum/vnum.db');
    expect(value('Service', 'EnvironmentFile')).toBe('-/etc/vnum/replica.env');
    expect(value('Unit', 'Before')).toBe('vnum.service');
    expect(value('Service', 'Restart')).toBe('always');
    expect(value('Service', 'KillSignal')).toBe('SIGTERM');
    // Every VNUM_ variable it names is one vnum reads (error codes are not variables).
    const product = envVarsReadByProduct();
    const codes = new Set([...readRepo('src/errors.ts').matchAll(/'(VNUM_[A-Z_]+)'/g)].map((m) => m[1]!));
    const named = (unitText.match(/\bVNUM_[A-Z0-9_]+\b/g) ?? []).filter((n) => !codes.has(n));
    expect(named).toEqual(expect.arrayContaining(['VNUM_NODE', 'VNUM_AUTHORITY', 'VNUM_REPLICA_METRICS_PORT', 'VNUM_WHEN_STALE']));
    for (const name of named) expect(product, name).toContain(name);
  });

  it('is hardened like vnum.service, fenced to loopback until the operator adds the authority', () => {
    for (const key of ['NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'RestrictAddressFamilies', 'CapabilityBoundingSet']) {
      expect(value('Service', key), key).toBe(values(routerUnit, 'Service', key).at(-1));
    }
    expect(values(unit, 'Service', 'SystemCallFilter')).toEqual(values(routerUnit, 'Service', 'SystemCallFilter'));
    expect(value('Service', 'IPAddressDeny')).toBe('any');
    expect(value('Service', 'IPAddressAllow')).toBe('localhost');
  });

  itWhen(noSystemdAnalyze, 'systemd-analyze verify reports nothing, and security --offline rates its exposure 1.5 or lower, with and without the pgpass credential', () => {
    const dropIn = '[Service]\nLoadCredential=pgpass:/etc/vnum/pgpass\nEnvironment=PGPASSFILE=%d/pgpass\n';
    // The drop-in the unit documents, as `systemctl edit` would add it.
    expect(unitText).toContain('#   LoadCredential=pgpass:/etc/vnum/pgpass\n#   Environment=PGPASSFILE=%d/pgpass');
    for (const text of [unitText, `${unitText}\n${dropIn}`]) {
      const file = systemd.unitFile(text);
      const verify = systemd.verify(file);
      expect(verify.output).toBe('');
      expect(verify.status).toBe(0);
      expect(systemd.exposure(file)).toBeLessThanOrEqual(1.5);
    }
  });
});

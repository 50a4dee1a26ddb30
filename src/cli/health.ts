import type { Command } from 'commander';
import { probeRouter } from '../../agi/health-probe.js';
import { FASTAGI_DEFAULTS } from '../../agi/server.js';
import { healthReport, type HealthReport } from '../calls/health.js';
import { readRouterStatus, routerKey, type RouterStatus } from '../calls/store.js';
import { openDb, resolveDbPath, schemaVersion } from '../store/db.js';
import { globalOptions } from './context.js';
import { printJson, printLine } from './output.js';
import { addSetting, boundedDuration, hostSetting, SETTING_LIMITS, span, tcpPort } from './settings.js';

/**
 * `vnum health`: is this installation routing and logging calls? Four checks,
 * each from where it can be known:
 *
 * - router: it answers a FastAGI health probe (agi/health-probe.ts) at its
 *   address (the same --host/--port defaults as `vnum serve`): listening is
 *   not enough, it must accept the address the probe comes from and answer.
 *   A router that refuses that address, is full or is stopping is unhealthy;
 * - database: it opens read-only with the current schema and answers a read;
 * - AMI: what that `vnum serve` last reported in the database (it writes its
 *   AMI state every 5 s): logged in, and the report fresh. A serve without AMI
 *   configured reports "disabled", which counts as healthy unless
 *   --require-ami;
 * - Asterisk version: from the same report (CoreSettings at login).
 *
 * Exit 0 when healthy, 1 otherwise (Docker's HEALTHCHECK and monitoring
 * scripts read exactly that).
 */
export async function checkHealth(options: { dbPath: string; host: string; port: number; timeoutMs: number; requireAmi: boolean }): Promise<HealthReport> {
  const address = routerKey(options.host, options.port);
  const probed = await probeRouter(options.host, options.port, options.timeoutMs);
  const database: HealthReport['database'] = { ok: false, path: options.dbPath, schemaVersion: null, error: null };
  let status: RouterStatus | undefined;
  try {
    // A probe: it never creates, never migrates.
    const db = openDb(options.dbPath, { mode: 'read', migrate: false });
    try {
      database.schemaVersion = schemaVersion(db);
      db.prepare('SELECT count(*) FROM (SELECT 1 FROM session LIMIT 1)').get();
      status = readRouterStatus(db, address);
      database.ok = true;
    } finally {
      db.close();
    }
  } catch (e) {
    database.error = (e as Error).message;
  }
  return healthReport({ router: probed, address, database, status, now: Date.now(), requireAmi: options.requireAmi });
}

export function registerHealth(program: Command): void {
  const health = program
    .command('health')
    .description('does the router answer, is the database readable, AMI logged in? Exit 0 if so, 1 if not');
  addSetting(health, {
    flags: '--host <address>',
    description: "the router's address, as given to vnum serve",
    judge: hostSetting,
    default: { value: FASTAGI_DEFAULTS.host },
    env: 'VNUM_AGI_HOST',
  });
  addSetting(health, { flags: '--port <port>', description: "the router's port", judge: tcpPort, default: { value: FASTAGI_DEFAULTS.port }, env: 'VNUM_AGI_PORT' });
  addSetting(health, {
    flags: '--timeout <duration>',
    description: `how long the router may take to answer the probe, ${span(SETTING_LIMITS.healthTimeoutMs)}`,
    judge: boundedDuration(SETTING_LIMITS.healthTimeoutMs),
    default: { value: 2000, shown: '2s' },
  });
  health
    .option('--require-ami', 'unhealthy when vnum serve runs without AMI')
    .option('--json', 'JSON: {"healthy","router","database","ami","asterisk"} (see README)')
    .action(async (options: { host: string; port: number; timeout: number; requireAmi?: boolean; json?: boolean }, command: Command) => {
      const report = await checkHealth({
        dbPath: resolveDbPath(globalOptions(command).db),
        host: options.host,
        port: options.port,
        timeoutMs: options.timeout,
        requireAmi: options.requireAmi ?? false,
      });
      if (options.json) printJson(report);
      else {
        const mark = (ok: boolean) => (ok ? 'ok  ' : 'FAIL');
        printLine(`router    ${mark(report.router.ok)}  ${report.router.address}${report.router.error ? `: ${report.router.error}` : ' answering'}`);
        printLine(
          `database  ${mark(report.database.ok)}  ${report.database.path}${report.database.error ? `: ${report.database.error}` : ` (schema ${report.database.schemaVersion})`}`,
        );
        const ami = report.ami;
        const amiText =
          ami.state === 'logged-in' && ami.ok
            ? `logged in since ${ami.since}${report.asterisk.version ? `, Asterisk ${report.asterisk.version}` : ''}`
            : ami.state === 'disabled' && ami.ok
              ? 'not configured in vnum serve (no call log)'
              : `${ami.state}${ami.error ? `: ${ami.error}` : ''}`;
        printLine(`ami       ${mark(ami.ok)}  ${amiText}`);
        printLine(report.healthy ? 'healthy' : 'unhealthy');
      }
      process.exitCode = report.healthy ? 0 : 1;
    });
}

import type { Command } from 'commander';
import net from 'node:net';
import { ROUTER_DEFAULTS } from '../../agi/server.js';
import { readRouterStatus, type RouterStatus } from '../calls/store.js';
import { parseDuration } from '../duration.js';
import { ErrorCode, VnumError } from '../errors.js';
import { openDb, resolveDbPath, schemaVersion } from '../store/db.js';
import { STATUS_FRESH_MS } from './calls.js';
import { globalOptions } from './context.js';
import { isoTime, printJson, printLine } from './output.js';
import { routerKey } from './serve.js';

/**
 * `vnum health`: is this installation routing and logging calls? Four checks,
 * each from where it can be known:
 *
 * - router: a TCP connection to the router's address succeeds (the same
 *   --host/--port defaults as `vnum serve`; the router drops an empty
 *   connection without a warning);
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
export interface HealthReport {
  healthy: boolean;
  router: { ok: boolean; address: string; error: string | null };
  database: { ok: boolean; path: string; schemaVersion: number | null; error: string | null };
  ami: { ok: boolean; state: string; since: string | null; reportedAt: string | null; error: string | null };
  asterisk: { version: string | null };
}

/** A probe that waits longer is no health check (and Node's timers stop at 24.8 days). */
const MAX_PROBE_TIMEOUT_MS = 60_000;

function probe(host: string, port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (error: string | null) => {
      socket.destroy();
      resolve(error);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`));
    socket.once('connect', () => done(null));
    socket.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

function amiCheck(status: RouterStatus | undefined, router: string, now: number, requireAmi: boolean): HealthReport['ami'] {
  if (!status) {
    return { ok: false, state: 'unknown', since: null, reportedAt: null, error: `no vnum serve on ${router} has reported to this database` };
  }
  const base = { state: status.amiState, since: isoTime(status.amiSince), reportedAt: isoTime(status.updatedAt) };
  if (status.amiState === 'stopped') return { ok: false, ...base, error: `vnum serve stopped at ${isoTime(status.updatedAt)}` };
  if (now - status.updatedAt > STATUS_FRESH_MS) {
    return { ok: false, ...base, error: `last report ${Math.round((now - status.updatedAt) / 1000)} s ago: vnum serve is gone or stuck` };
  }
  if (status.amiState === 'disabled') {
    return { ok: !requireAmi, ...base, error: requireAmi ? 'AMI is not configured in vnum serve (VNUM_AMI_USER)' : null };
  }
  if (status.amiState !== 'logged-in') return { ok: false, ...base, error: status.amiError ?? `AMI ${status.amiState}` };
  return { ok: true, ...base, error: null };
}

export async function checkHealth(options: { dbPath: string; host: string; port: number; timeoutMs: number; requireAmi: boolean }): Promise<HealthReport> {
  const address = routerKey(options.host, options.port);
  const routerError = await probe(options.host, options.port, options.timeoutMs);
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
  const ami = database.ok
    ? amiCheck(status, address, Date.now(), options.requireAmi)
    : { ok: false, state: 'unknown', since: null, reportedAt: null, error: 'database unreadable' };
  const router = { ok: routerError === null, address, error: routerError === null ? null : `not listening: ${routerError}` };
  return {
    healthy: router.ok && database.ok && ami.ok,
    router,
    database,
    ami,
    asterisk: { version: status && status.amiState === 'logged-in' ? status.asteriskVersion : null },
  };
}

export function registerHealth(program: Command): void {
  program
    .command('health')
    .description('is the router listening, the database readable, AMI logged in? Exit 0 if so, 1 if not')
    .option('--host <address>', 'the router\'s address, as given to vnum serve (VNUM_AGI_HOST)', process.env.VNUM_AGI_HOST ?? ROUTER_DEFAULTS.host)
    .option('--port <port>', 'the router\'s port (VNUM_AGI_PORT)', process.env.VNUM_AGI_PORT ?? String(ROUTER_DEFAULTS.port))
    .option('--timeout <duration>', 'how long the router may take to accept a connection (at most 1m)', '2s')
    .option('--require-ami', 'unhealthy when vnum serve runs without AMI')
    .option('--json', 'JSON: {"healthy","router","database","ami","asterisk"} (see README)')
    .action(async (options: { host: string; port: string; timeout: string; requireAmi?: boolean; json?: boolean }, command: Command) => {
      const port = Number(options.port);
      if (!/^\d+$/.test(options.port) || port < 1 || port > 65535) throw new VnumError(ErrorCode.InvalidArgument, `invalid port "${options.port}"`);
      const report = await checkHealth({
        dbPath: resolveDbPath(globalOptions(command).db),
        host: options.host,
        port,
        timeoutMs: parseDuration(options.timeout, 'timeout', { min: 1, max: MAX_PROBE_TIMEOUT_MS }),
        requireAmi: options.requireAmi ?? false,
      });
      if (options.json) printJson(report);
      else {
        const mark = (ok: boolean) => (ok ? 'ok  ' : 'FAIL');
        printLine(`router    ${mark(report.router.ok)}  ${report.router.address}${report.router.error ? `: ${report.router.error}` : ' listening'}`);
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

import { createRequire } from 'node:module';
import { Option, type Command } from 'commander';
import { createLogger } from '../log.js';
import { REPLICA_DEFAULTS, slotForNode, startReplica, type ReplicaEvent } from '../replica/consumer.js';
import { HealthWriter } from '../replica/health.js';
import { startAuthorityReports } from '../replica/report.js';
import type { PgTarget } from '../replica/stream.js';
import { ErrorCode, VnumError } from '../errors.js';
import { boundedDuration, configurationError, formatMs } from '../settings.js';
import { openDb, resolveDbPath } from '../store/db.js';
import { AUTHORITY_ENV, authorityName, authoritySetting } from './authority.js';
import { globalOptions } from './context.js';
import { settingName } from './settings.js';

const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };

/** Bounds of `vnum replica`'s settings. */
export const REPLICA_LIMITS = Object.freeze({
  pingMs: Object.freeze({ min: 100, max: 10_000 }),
  linkTimeoutMs: Object.freeze({ min: 1_000, max: 120_000 }),
  connectTimeoutMs: Object.freeze({ min: 500, max: 60_000 }),
  commandTimeoutMs: Object.freeze({ min: 1_000, max: 600_000 }),
  retryMaxMs: Object.freeze({ min: 250, max: 300_000 }),
  reportEveryMs: Object.freeze({ min: 1_000, max: 300_000 }),
});

export const REPORT_EVERY_MS = 2_000;

interface ReplicaOptions {
  node?: string;
  authority?: string;
  ping: string;
  linkTimeout: string;
  connectTimeout: string;
  commandTimeout: string;
  retryMax: string;
  reportEvery: string;
}

export interface ReplicaSettings {
  node: string;
  target: PgTarget;
  pingIntervalMs: number;
  staleAfterMs: number;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  retryMaxMs: number;
  reportEveryMs: number;
}

/** Every setting of `vnum replica`, judged before the file is opened. */
export function replicaSettings(options: ReplicaOptions, command: Command): ReplicaSettings {
  const name = (key: string, flag: string, envVar?: string) => settingName(command, key, flag, envVar);
  const nodeName = name('node', '--node', 'VNUM_NODE');
  if (options.node === undefined || options.node === '') {
    throw new VnumError(ErrorCode.Configuration, `${nodeName} is missing: this node's name (its slot on the authority is vnum_<name>)`);
  }
  try {
    slotForNode(options.node);
  } catch (e) {
    throw configurationError(nodeName, options.node.slice(0, 70), '1-58 characters of a-z 0-9 _ (it names the slot vnum_<name>)');
  }
  const duration = (key: keyof ReplicaOptions & string, flag: string, limits: { min: number; max: number }) =>
    boundedDuration(name(key, flag), options[key] as string, limits);
  const pingIntervalMs = duration('ping', '--ping', REPLICA_LIMITS.pingMs);
  const staleAfterMs = duration('linkTimeout', '--link-timeout', REPLICA_LIMITS.linkTimeoutMs);
  // The node judges silence on its ping ticks and skips a late one: a bound under two pings could never be judged.
  if (staleAfterMs < 2 * pingIntervalMs) {
    throw configurationError(name('linkTimeout', '--link-timeout'), options.linkTimeout, `at least twice --ping (${formatMs(2 * pingIntervalMs)})`);
  }
  return {
    node: options.node,
    target: authoritySetting(name('authority', '--authority', AUTHORITY_ENV), options.authority),
    pingIntervalMs,
    staleAfterMs,
    connectTimeoutMs: duration('connectTimeout', '--connect-timeout', REPLICA_LIMITS.connectTimeoutMs),
    commandTimeoutMs: duration('commandTimeout', '--command-timeout', REPLICA_LIMITS.commandTimeoutMs),
    retryMaxMs: duration('retryMax', '--retry-max', REPLICA_LIMITS.retryMaxMs),
    reportEveryMs: duration('reportEvery', '--report-every', REPLICA_LIMITS.reportEveryMs),
  };
}

function span(limits: { min: number; max: number }): string {
  return `${formatMs(limits.min)} to ${formatMs(limits.max)}`;
}

/** One log line per replica event: positions, counts and reasons, never a row's values. */
function logEvent(logger: ReturnType<typeof createLogger>, event: ReplicaEvent): void {
  switch (event.type) {
    case 'connected':
      logger.info({ systemId: event.systemId, from: event.from }, 'following the slot');
      break;
    case 'rebuilding':
      logger.warn({ reason: event.reason }, 'rebuilding the replica from a snapshot');
      break;
    case 'rebuilt':
      logger.info({ lsn: event.lsn, rows: event.rows, ms: event.ms }, 'replica rebuilt');
      break;
    case 'stale':
      logger.warn({ silentMs: event.silentMs }, 'nothing heard from the authority: reconnecting');
      break;
    case 'disconnected':
      logger.warn({ error: event.error, sqlState: event.code ?? null, retryInMs: event.retryInMs }, 'disconnected from the authority');
      break;
  }
}

export function registerReplica(program: Command): void {
  program
    .command('replica')
    .description("cluster mode: keep this node's SQLite file (--db) equal to the authority, through its own logical replication slot")
    .addOption(new Option('--node <name>', "this node's name, 1-58 of a-z 0-9 _ (its slot: vnum_<name>)").env('VNUM_NODE'))
    .addOption(new Option('--authority <url>', 'the authority, postgres://user@host:port/database (password: PGPASSWORD or ~/.pgpass)').env('VNUM_AUTHORITY'))
    .option('--ping <duration>', `how often to ask the authority for a keepalive, ${span(REPLICA_LIMITS.pingMs)}`, formatMs(REPLICA_DEFAULTS.pingIntervalMs))
    .option(
      '--link-timeout <duration>',
      `silence after which the link is dropped and made again, ${span(REPLICA_LIMITS.linkTimeoutMs)}; set the authority's wal_sender_timeout a little above it`,
      formatMs(REPLICA_DEFAULTS.staleAfterMs),
    )
    .option('--connect-timeout <duration>', `to connect, ${span(REPLICA_LIMITS.connectTimeoutMs)}`, formatMs(REPLICA_DEFAULTS.connectTimeoutMs))
    .option(
      '--command-timeout <duration>',
      `longest replication command or snapshot-copy query, ${span(REPLICA_LIMITS.commandTimeoutMs)}`,
      formatMs(REPLICA_DEFAULTS.commandTimeoutMs),
    )
    .option('--retry-max <duration>', `longest wait between reconnects, ${span(REPLICA_LIMITS.retryMaxMs)}`, formatMs(REPLICA_DEFAULTS.retryMaxMs))
    .option('--report-every <duration>', `how often to report to the authority's node_report, ${span(REPLICA_LIMITS.reportEveryMs)}`, formatMs(REPORT_EVERY_MS))
    .action(async (options: ReplicaOptions, command: Command) => {
      const logger = createLogger();
      const settings = replicaSettings(options, command);
      const dbPath = resolveDbPath(globalOptions(command).db);
      const db = openDb(dbPath, { mode: 'create' });
      const health = new HealthWriter(db);
      const replica = startReplica({
        db,
        target: settings.target,
        node: settings.node,
        pingIntervalMs: settings.pingIntervalMs,
        staleAfterMs: settings.staleAfterMs,
        connectTimeoutMs: settings.connectTimeoutMs,
        commandTimeoutMs: settings.commandTimeoutMs,
        retryMaxMs: settings.retryMaxMs,
        onEvent: (event) => logEvent(logger, event),
      });
      const writeHealth = (): void => {
        try {
          health.write(replica.status());
        } catch (error) {
          // A busy file (vnum serve writing its call log) costs one report; the next tick writes again.
          logger.warn({ err: error }, 'could not write the replica health row');
        }
      };
      writeHealth();
      const healthTimer = setInterval(writeHealth, settings.pingIntervalMs);
      const reports = startAuthorityReports({
        target: settings.target,
        status: () => replica.status(),
        version,
        everyMs: settings.reportEveryMs,
        connectTimeoutMs: settings.connectTimeoutMs,
        onError: (message) => logger.warn({ error: message }, 'cannot report to the authority (retrying)'),
      });
      logger.info(
        { node: settings.node, slot: replica.status().slot, authority: authorityName(settings.target), db: dbPath },
        'vnum replica following the authority into this file',
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals): void => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          logger.info({ signal }, 'stopping');
          clearInterval(healthTimer);
          replica
            .stop()
            .then(() => writeHealth())
            .then(() => reports.stop())
            .catch((error: unknown) => logger.error({ err: error }, 'error while stopping'))
            .finally(() => {
              db.close();
              logger.info('vnum replica stopped');
              resolve();
            });
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}

import { Option, type Command } from 'commander';
import { ErrorCode, VnumError } from '../errors.js';
import { clusterStatus, type NodeView } from '../replica/cluster.js';
import type { PgTarget } from '../replica/stream.js';
import { migratePg } from '../store/pg/migrate.js';
import { boundedDuration, formatMs } from '../settings.js';
import { AUTHORITY_ENV, authorityName, authoritySetting, connectAuthority } from './authority.js';
import { printJson, printLine, printTable } from './output.js';
import { settingName } from './settings.js';

const CONNECT_TIMEOUT_MS = 5_000;
const STALE_LIMITS = Object.freeze({ min: 1_000, max: 86_400_000 });

interface AuthorityOptions {
  authority?: string;
}

function authorityOption(): Option {
  return new Option('--authority <url>', 'the authority, postgres://user@host:port/database (password: PGPASSWORD or ~/.pgpass)').env('VNUM_AUTHORITY');
}

function bytes(n: number | null): string | null {
  if (n === null) return null;
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(1)} GB`;
}

function ago(ms: number | null): string | null {
  return ms === null ? null : ms < 10_000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

function printNodes(nodes: NodeView[]): void {
  if (nodes.length === 0) {
    printLine('no nodes: no vnum_* slot on the authority and no node has reported');
    return;
  }
  printTable(
    ['NODE', 'STATE', 'LAG', 'BEHIND', 'SLOT SIZE', 'WAL', 'LAST CONTACT', 'PHASE', 'ADDRESS', 'LAST ERROR'],
    nodes.map((n) => [
      n.node,
      n.state,
      ago(n.lagMs),
      bytes(n.behindBytes),
      bytes(n.slotBytes),
      n.walStatus,
      n.lastContactAgoMs === null ? null : `${ago(n.lastContactAgoMs)} ago`,
      n.phase,
      n.clientAddress,
      n.lastError === null ? null : n.lastError.slice(0, 80),
    ]),
  );
}

/** A failed query as one of ours: a schema never migrated names the fix; anything else is the authority being away. */
function authorityQueryError(error: unknown, target: PgTarget): VnumError {
  const message = error instanceof Error ? error.message : String(error);
  if ((error as { code?: unknown }).code === '42P01') {
    return new VnumError(ErrorCode.DatabaseVersion, `the authority ${authorityName(target)} has no vnum schema (${message}): run vnum cluster migrate`);
  }
  return new VnumError(ErrorCode.AuthorityUnavailable, `the authority ${authorityName(target)} failed: ${message}`);
}

export function registerCluster(program: Command): void {
  const cluster = program.command('cluster').description('cluster mode: the authority (PostgreSQL) and its nodes');

  cluster
    .command('migrate')
    .description("create or upgrade the authority's schema (one transaction; safe to run on every deploy)")
    .addOption(authorityOption())
    .action(async (options: AuthorityOptions, command: Command) => {
      const target = authoritySetting(settingName(command, 'authority', '--authority', AUTHORITY_ENV), options.authority);
      const client = await connectAuthority(target, CONNECT_TIMEOUT_MS, 'vnum-cluster-migrate');
      try {
        const { from, to } = await migratePg(client);
        printLine(from === to ? `the authority ${authorityName(target)} is at schema version ${to}` : `migrated the authority ${authorityName(target)} from schema version ${from} to ${to}`);
      } finally {
        await client.end().catch(() => {});
      }
    });

  cluster
    .command('status')
    .description("every node's lag, slot size and last contact: pg_replication_slots beside each node's own report")
    .addOption(authorityOption())
    .option('--stale-after <duration>', `a node whose view or report is older than this is stale, ${formatMs(STALE_LIMITS.min)} to 24h`, '10s')
    .option('--json', 'print JSON (stable field names)')
    .action(async (options: AuthorityOptions & { staleAfter: string; json?: boolean }, command: Command) => {
      const target = authoritySetting(settingName(command, 'authority', '--authority', AUTHORITY_ENV), options.authority);
      const staleAfterMs = boundedDuration(settingName(command, 'staleAfter', '--stale-after'), options.staleAfter, STALE_LIMITS);
      const client = await connectAuthority(target, CONNECT_TIMEOUT_MS, 'vnum-cluster-status');
      try {
        const nodes = await clusterStatus(client, staleAfterMs).catch((error: unknown) => {
          throw authorityQueryError(error, target);
        });
        if (options.json) printJson({ authority: authorityName(target), staleAfterMs, nodes });
        else printNodes(nodes);
      } finally {
        await client.end().catch(() => {});
      }
    });
}

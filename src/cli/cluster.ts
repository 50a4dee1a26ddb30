import type { Command } from 'commander';
import { ErrorCode, VnumError } from '../errors.js';
import { NODE_STALE_AFTER_MS, type NodeView } from '../replica/cluster.js';
import type { PgTarget } from '../replica/stream.js';
import { addAuthoritySetting, authorityName, connectAuthority, requireAuthority } from './authority.js';
import { printJson, printLine, printTable } from './output.js';
import { addSetting, boundedDuration, formatMs, span } from './settings.js';

const CONNECT_TIMEOUT_MS = 5_000;
const STALE_LIMITS = Object.freeze({ min: 1_000, max: 86_400_000 });

interface AuthorityOptions {
  authority?: PgTarget;
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
    ['NODE', 'STATE', 'LAG', 'BEHIND', 'SLOT SIZE', 'WAL', 'LAST CONTACT', 'PHASE', 'ADDRESS', 'CALLS UNSHIPPED', 'LAST ERROR'],
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
      n.callLogBacklog === null ? null : `${n.callLogBacklog} (${ago(n.callLogShippedAgoMs)} ago)`,
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

  const migrate = cluster.command('migrate').description("create or upgrade the authority's schema (one transaction; safe to run on every deploy)");
  addAuthoritySetting(migrate).action(async (options: AuthorityOptions) => {
      const target = requireAuthority(options.authority);
      const client = await connectAuthority(target, CONNECT_TIMEOUT_MS, 'vnum-cluster-migrate');
      try {
        const { migratePg } = await import('../store/pg/migrate.js');
        const { from, to } = await migratePg(client);
        printLine(from === to ? `the authority ${authorityName(target)} is at schema version ${to}` : `migrated the authority ${authorityName(target)} from schema version ${from} to ${to}`);
      } finally {
        await client.end().catch(() => {});
      }
    });

  const status = cluster.command('status').description("every node's lag, slot size and last contact: pg_replication_slots beside each node's own report");
  addAuthoritySetting(status);
  addSetting(status, {
    flags: '--stale-after <duration>',
    description: `a node whose view or report is older than this is stale, ${span(STALE_LIMITS)}`,
    judge: boundedDuration(STALE_LIMITS),
    default: { value: NODE_STALE_AFTER_MS, shown: formatMs(NODE_STALE_AFTER_MS) },
  });
  status
    .option('--json', 'print JSON (stable field names)')
    .action(async (options: AuthorityOptions & { staleAfter: number; json?: boolean }) => {
      const target = requireAuthority(options.authority);
      const staleAfterMs = options.staleAfter;
      const client = await connectAuthority(target, CONNECT_TIMEOUT_MS, 'vnum-cluster-status');
      try {
        const { clusterStatus } = await import('../replica/cluster.js');
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

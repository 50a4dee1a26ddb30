import type pg from 'pg';
import { ErrorCode, VnumError } from '../../errors.js';
import { PG_MIGRATIONS } from './migrations.js';

/**
 * Bring the authority's schema up to date: every missing migration in one
 * transaction, under an advisory lock, so several processes starting at
 * once agree (PostgreSQL's DDL is transactional: a failed step leaves the
 * schema as it was). The version lives in vnum_schema, which is not
 * published.
 */
export async function migratePg(client: pg.ClientBase, migrations: readonly string[] = PG_MIGRATIONS): Promise<{ from: number; to: number }> {
  try {
    await client.query('BEGIN');
    try {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('vnum schema'))");
      await client.query(
        'CREATE TABLE IF NOT EXISTS vnum_schema (one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)',
      );
      await client.query('INSERT INTO vnum_schema (version) VALUES (0) ON CONFLICT DO NOTHING');
      const from = Number((await client.query<{ version: number | string }>('SELECT version FROM vnum_schema')).rows[0]!.version);
      if (from > migrations.length) {
        throw new VnumError(
          ErrorCode.Database,
          `PostgreSQL schema version ${from} is newer than this vnum understands (${migrations.length}): upgrade vnum`,
        );
      }
      for (let version = from; version < migrations.length; version++) await client.query(migrations[version]!);
      await client.query('UPDATE vnum_schema SET version = $1', [migrations.length]);
      await client.query('COMMIT');
      return { from, to: migrations.length };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  } catch (error) {
    if (error instanceof VnumError) throw error;
    throw new VnumError(ErrorCode.Database, `cannot migrate the PostgreSQL schema: ${(error as Error).message}`);
  }
}

import type { Command } from 'commander';
import type pg from 'pg';
import type { Authority } from '../authority/authority.js';
import type { PgTarget } from '../replica/stream.js';
import { ErrorCode, VnumError } from '../errors.js';
import { commandName } from './context.js';
import { addSetting, configurationError } from './settings.js';

/**
 * The authority (PostgreSQL) as cluster commands name it: one URL,
 * `postgres://user@host:port/database`. The password never comes from a
 * flag or the URL (a command line is visible to every user in `ps`): it comes
 * from PostgreSQL's own places, PGPASSWORD or the owner-only ~/.pgpass (or the
 * server trusts the address or a certificate).
 */
/** `--authority` (or VNUM_AUTHORITY), judged as commander reads it; undefined when neither is given. */
export function addAuthoritySetting(command: Command): Command {
  return addSetting<PgTarget | undefined>(command, {
    flags: '--authority <url>',
    description: 'the authority, postgres://user@host:port/database (password: PGPASSWORD or ~/.pgpass)',
    judge: authoritySetting,
    default: { value: undefined },
    env: 'VNUM_AUTHORITY',
  });
}

/** The authority the command was given (--authority or VNUM_AUTHORITY), or undefined: the single box's SQLite file. */
export function givenAuthority(command: Command): PgTarget | undefined {
  return command.opts<{ authority?: PgTarget }>().authority;
}

/**
 * Runs `work` on cluster mode's PostgreSQL authority, through the same
 * Authority the HTTP API runs on (its rules, codes and refusals), and closes
 * it. `pg` is loaded only here: the single box never loads it.
 */
export async function onAuthority<T>(target: PgTarget, command: Command, work: (authority: Authority) => Promise<T>): Promise<T> {
  const { openPostgresAuthority } = await import('../authority/postgres.js');
  const authority = await openPostgresAuthority(target, { applicationName: commandName(command), connections: 1 });
  try {
    return await work(authority);
  } finally {
    await authority.close();
  }
}

/** The authority a command needs, or the configuration error saying how to give it. */
export function requireAuthority(target: PgTarget | undefined): PgTarget {
  if (target !== undefined) return target;
  throw new VnumError(
    ErrorCode.Configuration,
    "--authority is missing: the authority's address, e.g. postgres://vnum@10.0.0.5:5432/vnum; or set VNUM_AUTHORITY",
  );
}

export function authoritySetting(name: string, text: string): PgTarget {
  if (text === '') throw configurationError(name, text, "empty: the authority's address, e.g. postgres://vnum@10.0.0.5:5432/vnum");
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw configurationError(name, text.slice(0, 200), 'not a URL; e.g. postgres://vnum@10.0.0.5:5432/vnum');
  }
  const shown = url.password ? text.replace(`:${url.password}@`, ':***@') : text;
  const bad = (why: string): VnumError => configurationError(name, shown.slice(0, 200), why);
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw bad('the scheme must be postgres://');
  if (url.password) throw bad('a password in the URL would show in ps and the environment: use PGPASSWORD or ~/.pgpass');
  if (!url.hostname) throw bad('no host');
  if (!url.username) throw bad('no user (postgres://USER@host/database)');
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database || database.includes('/')) throw bad('no database (postgres://user@host/DATABASE)');
  if (url.search || url.hash) throw bad('query parameters and fragments are not supported');
  const port = url.port === '' ? 5432 : Number(url.port);
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port, user: decodeURIComponent(url.username), database };
}

/** `user@host:port/database`: how messages name the authority (never a password). */
export function authorityName(target: PgTarget): string {
  return `${target.user}@${target.host}:${target.port}/${target.database}`;
}

/** A plain client to the authority, or VNUM_AUTHORITY_UNAVAILABLE naming why not. */
export async function connectAuthority(target: PgTarget, timeoutMs: number, applicationName: string): Promise<pg.Client> {
  const { default: pgModule } = await import('pg'); // loaded only by the cluster commands
  const client = new pgModule.Client({ ...target, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, application_name: applicationName });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw new VnumError(ErrorCode.AuthorityUnavailable, `cannot reach the authority ${authorityName(target)}: ${(error as Error).message}`);
  }
  return client;
}

import type { Command } from 'commander';
import { parseScopes, SCOPES, validateKeyName } from '../access/api-keys.js';
import type { Authority } from '../authority/authority.js';
import { openSqliteAuthority } from '../authority/sqlite.js';
import { addAuthoritySetting, givenAuthority, onAuthority } from './authority.js';
import { apiKeyJson } from '../json.js';
import { resolveDbPath, type OpenMode } from '../store/db.js';
import { globalOptions, refuseReplicaFile } from './context.js';
import { printJson, printLine, printNotice, printTable, shortTime } from './output.js';

/** The SQLite file (--db); a node's replica file is refused before anything writes to it (the keys live on the authority). */
function openSqliteFile(command: Command, mode: OpenMode): Authority {
  const path = resolveDbPath(globalOptions(command).db);
  if (mode !== 'read') refuseReplicaFile(command, path);
  return openSqliteAuthority(path, { mode });
}

/** The SQLite file (--db), or with --authority (VNUM_AUTHORITY) cluster mode's PostgreSQL, where `vnum api --authority` reads keys. */
async function withAuthority<T>(command: Command, mode: OpenMode, work: (authority: Authority) => Promise<T>): Promise<T> {
  const target = givenAuthority(command);
  if (target !== undefined) return onAuthority(target, command, work);
  const authority = openSqliteFile(command, mode);
  try {
    return await work(authority);
  } finally {
    await authority.close();
  }
}

export function registerApiKey(program: Command): void {
  const apikey = program.command('apikey').description('keys for the HTTP API (vnum api): created here, shown once, stored only as a hash');

  const create = apikey.command('create');
  addAuthoritySetting(create);
  create
    .description('make a key and print it once: it cannot be shown again')
    .requiredOption('--name <name>', 'what it is for, e.g. orders (A-Z a-z 0-9 . _ : -, up to 64; unique among keys not revoked)')
    .requiredOption('--scope <scopes>', `what it may do, comma-separated: ${SCOPES.join(', ')} (read: every GET; sessions, pool: read and those writes; admin: everything)`)
    .option('--json', 'JSON: {"id","name","scopes","createdAt","revokedAt","lastUsedAt","key"}')
    .action(async (options: { name: string; scope: string; json?: boolean }, command: Command) => {
      const name = validateKeyName(options.name);
      const scopes = parseScopes(options.scope);
      const { key, token } = await withAuthority(command, 'create', (authority) => authority.createApiKey({ name, scopes, now: Date.now() }));
      if (options.json) {
        printJson({ ...apiKeyJson(key), key: token });
        return;
      }
      printLine(`API key "${key.name}" (id ${key.id}), scopes ${key.scopes.join(', ')}:`);
      printLine(token);
      printNotice('store it now: only its hash is kept, it cannot be shown again. Send it as "Authorization: Bearer <key>"');
    });

  const list = apikey.command('list');
  addAuthoritySetting(list);
  list
    .description('every key, revoked ones too (never their secrets, which are not stored)')
    .option('--json', 'JSON: [{"id","name","scopes","createdAt","revokedAt","lastUsedAt"}]')
    .action(async (options: { json?: boolean }, command: Command) => {
      const keys = await withAuthority(command, 'read', (authority) => authority.listApiKeys());
      if (options.json) return printJson(keys.map(apiKeyJson));
      printTable(
        ['ID', 'NAME', 'SCOPES', 'CREATED', 'LAST USED', 'REVOKED'],
        keys.map((k) => [k.id, k.name, k.scopes.join(','), shortTime(k.createdAt), shortTime(k.lastUsedAt), shortTime(k.revokedAt)]),
      );
    });

  const revoke = apikey.command('revoke');
  addAuthoritySetting(revoke);
  revoke
    .description('revoke a key: the next request with it is refused (401)')
    .argument('<key>', 'its id, or the name of a key not revoked')
    .option('--json', 'JSON: the key, plus "changed"')
    .action(async (idOrName: string, options: { json?: boolean }, command: Command) => {
      const { key, changed } = await withAuthority(command, 'write', (authority) => authority.revokeApiKey(idOrName, Date.now()));
      if (options.json) return printJson({ ...apiKeyJson(key), changed });
      printLine(changed ? `API key "${key.name}" (id ${key.id}) revoked` : `API key "${key.name}" (id ${key.id}) was already revoked at ${shortTime(key.revokedAt)}`);
    });
}

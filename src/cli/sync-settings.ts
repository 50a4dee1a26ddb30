/**
 * How `pool sync` fetches: its flags and the environment, judged before any
 * connection (VNUM_INVALID_ARGUMENT naming the flag). The token never comes
 * from a flag (a command line is visible to every user in `ps`):
 * `--token-file` / `VNUM_SYNC_TOKEN_FILE` (an owner-only file, e.g. a
 * systemd credential), else `VNUM_SYNC_TOKEN`.
 */
import { X509Certificate } from 'node:crypto';
import { parseDuration } from '../duration.js';
import { ErrorCode, VnumError } from '../errors.js';
import { readSecretFile } from './secret-file.js';
import { VERSION } from './version.js';
import { readExportFile } from '../provider/source.js';
import type { FetchPolicy } from '../provider/fetch.js';

export interface FetchFlags {
  tokenFile?: string | undefined;
  auth?: string | undefined;
  caFile?: string | undefined;
  allowHttp?: boolean | undefined;
  timeout: string;
  maxSize: string;
  maxRedirects: string;
}

export const FETCH_DEFAULTS = { timeout: '30s', maxSize: '16MiB', maxRedirects: '5' } as const;
const TIMEOUT_BOUNDS = { min: 1_000, max: 10 * 60_000 };
const SIZE_BOUNDS = { min: 1024, max: 1024 ** 3 };
const MAX_REDIRECTS = 10;
/** A CA bundle is a few certificates; a megabyte is the wrong file. */
const MAX_CA_FILE_BYTES = 1024 * 1024;

function invalid(message: string): VnumError {
  return new VnumError(ErrorCode.InvalidArgument, message);
}

const SIZE_UNITS: Record<string, number> = { '': 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** `16MiB`, `512KiB`, `1048576` -> bytes. */
export function parseSize(text: string, what: string): number {
  const match = /^(\d{1,10})(KiB|MiB|GiB)?$/i.exec(text.trim());
  const bytes = match ? Number(match[1]) * SIZE_UNITS[(match[2] ?? '').toLowerCase()]! : NaN;
  if (!(bytes >= SIZE_BOUNDS.min && bytes <= SIZE_BOUNDS.max)) {
    throw invalid(`invalid ${what} "${text}": bytes, or a whole number of KiB, MiB or GiB, from 1KiB to 1GiB`);
  }
  return bytes;
}

/** The header a token goes in: `bearer` (Authorization: Bearer), `basic` (a user:password token), `header:<Name>` (the token as is). */
export function authHeader(scheme: string, token: string): { header: string; value: string } {
  if (token === '') throw invalid('the token is empty');
  // Never echoed: a token is a secret. A control character would split the header.
  if (/[^\x20-\x7e]/.test(token)) throw invalid('the token holds a line break, a control or a non-ASCII character');
  const lower = scheme.toLowerCase();
  if (lower === 'bearer') return { header: 'authorization', value: `Bearer ${token}` };
  if (lower === 'basic') {
    if (!token.includes(':')) throw invalid('--auth basic takes a token of the form user:password');
    return { header: 'authorization', value: `Basic ${Buffer.from(token).toString('base64')}` };
  }
  const header = /^header:([!#$%&'*+.^_`|~0-9A-Za-z-]+)$/i.exec(scheme)?.[1];
  if (header === undefined) throw invalid(`invalid --auth "${scheme.slice(0, 60)}": bearer, basic, or header:<Name> (e.g. header:X-Api-Key)`);
  return { header: header.toLowerCase(), value: token };
}

function token(flags: FetchFlags, env: NodeJS.ProcessEnv): string | undefined {
  const file = flags.tokenFile ?? (env.VNUM_SYNC_TOKEN_FILE || undefined);
  if (file !== undefined) {
    const from = flags.tokenFile !== undefined ? 'token file (--token-file)' : 'token file (VNUM_SYNC_TOKEN_FILE)';
    return readSecretFile(file, from, ErrorCode.InvalidArgument);
  }
  return env.VNUM_SYNC_TOKEN || undefined;
}

function readCa(file: string): string {
  const pem = readExportFile(file, MAX_CA_FILE_BYTES, 'a CA file may hold').toString('utf8');
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw invalid(`--ca-file ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  for (const [index, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (e) {
      throw invalid(`--ca-file ${file}: certificate ${index + 1} cannot be read (${(e as Error).message})`);
    }
  }
  return pem;
}

export function fetchPolicy(flags: FetchFlags, env: NodeJS.ProcessEnv = process.env): FetchPolicy {
  const timeoutMs = parseDuration(flags.timeout, '--timeout', TIMEOUT_BOUNDS);
  const maxBytes = parseSize(flags.maxSize, '--max-size');
  if (!/^\d{1,2}$/.test(flags.maxRedirects) || Number(flags.maxRedirects) > MAX_REDIRECTS) {
    throw invalid(`invalid --max-redirects "${flags.maxRedirects}": a whole number from 0 to ${MAX_REDIRECTS}`);
  }
  const secret = token(flags, env);
  if (flags.auth !== undefined && secret === undefined) {
    throw invalid('--auth needs a token: --token-file, VNUM_SYNC_TOKEN_FILE or VNUM_SYNC_TOKEN');
  }
  return {
    allowHttp: flags.allowHttp === true,
    ca: flags.caFile !== undefined ? readCa(flags.caFile) : undefined,
    auth: secret !== undefined ? authHeader(flags.auth ?? 'bearer', secret) : undefined,
    timeoutMs,
    maxBytes,
    maxRedirects: Number(flags.maxRedirects),
    userAgent: `vnum/${VERSION}`,
  };
}

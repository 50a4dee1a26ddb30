import { ErrorCode, VnumError } from '../errors.js';
import { poolChangeJson, poolNumberJson } from '../json.js';
import { normaliseNumber } from '../numbers/normalise.js';
import { parsePoolCsv } from '../pool/csv.js';
import { readExport } from '../pool/export.js';
import { parseRetireShare } from '../pool/sync.js';
import type { HandlingChange } from '../pool/handling.js';
import type { PoolState } from '../pool/pool.js';
import { parts, type Handler } from './context.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { countryOf } from './sessions.js';

const listPool: Handler = async (request, _reply, context) => {
  const { query } = parts<{ state?: PoolState; limit: number; cursor?: string }>(request);
  const page = await context.authority.listPool({
    state: query.state,
    limit: query.limit,
    after: query.cursor === undefined ? undefined : decodeCursor('pool', query.cursor),
  });
  return { numbers: page.numbers.map(poolNumberJson), next: page.next === undefined ? null : encodeCursor('pool', page.next) };
};

/** As `vnum pool add [--country XX] [--reserved]`: the country is the numbers' own, and the default for those without +. */
const addToPool: Handler = async (request, _reply, context) => {
  const { body } = parts<never, { numbers: string[]; country?: string; reserved?: boolean }>(request);
  const state: PoolState = body.reserved ? 'reserved' : 'available';
  const change = await context.authority.addToPool(
    body.numbers.map((number) => ({ number, country: body.country, state })),
    { defaultCountry: countryOf(body.country, context), now: context.now(), rule: 'operator' },
  );
  return poolChangeJson(change);
};

/** As `vnum pool import`: every row checked before anything is written; the import rule never undoes the operator. */
const importPool: Handler = async (request, _reply, context) => {
  const { query, body } = parts<{ country?: string }, string>(request);
  const entries = parsePoolCsv(body);
  if (entries.length === 0) throw new VnumError(ErrorCode.InvalidCsv, 'the upload has no numbers');
  const change = await context.authority.addToPool(entries, { defaultCountry: countryOf(query.country, context), now: context.now(), rule: 'import' });
  return poolChangeJson(change);
};

const retireNumber: Handler = async (request, _reply, context) => {
  const { query, params } = parts<{ country?: string }, undefined, { number: string }>(request);
  const number = normaliseNumber(params.number, countryOf(query.country, context));
  const { changed } = await context.authority.retireNumber(number);
  return { number, state: 'retired', changed };
};

/** As `vnum pool set`: a value sets it, null returns it to vnum serve's default, absent leaves it. */
const setNumberHandling: Handler = async (request, _reply, context) => {
  const { query, params, body } = parts<{ country?: string }, HandlingChange & { fallback?: string | null }, { number: string }>(request);
  const country = countryOf(query.country, context);
  const number = normaliseNumber(params.number, country);
  const change: HandlingChange = {
    pin: body.pin,
    outOfSession: body.outOfSession,
    fallback: body.fallback == null ? body.fallback : normaliseNumber(body.fallback, country),
  };
  const { handling, changed } = await context.authority.setNumberHandling(number, change);
  return { number, ...handling, changed };
};

/** As `vnum pool sync`: the export in the body (CSV, or JSON as the provider wrote it), the options in the query. */
const syncPool: Handler = async (request, _reply, context) => {
  const { query, body } = parts<{ retireMissing: boolean; maxRetire: string; dryRun: boolean; country?: string }, unknown>(request);
  const type = request.headers['content-type']?.split(';')[0]!.trim().toLowerCase();
  // JSON arrives parsed (fastify's parser, prototype poisoning refused): read back as the export's text.
  const bytes = Buffer.from(type === 'application/json' ? JSON.stringify(body) : String(body), 'utf8');
  const { entries } = readExport(bytes, { format: type === 'application/json' ? 'json' : 'csv' });
  return context.authority.syncPool(entries, {
    retireMissing: query.retireMissing,
    maxRetirePercent: parseRetireShare(query.maxRetire, 'maxRetire'),
    dryRun: query.dryRun,
    defaultCountry: countryOf(query.country, context),
    now: context.now(),
  });
};

export const POOL_HANDLERS = { listPool, addToPool, importPool, retireNumber, setNumberHandling, syncPool };

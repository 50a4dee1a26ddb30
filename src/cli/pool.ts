import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ErrorCode, VnumError } from '../errors.js';
import { normaliseNumber } from '../numbers/normalise.js';
import { addToPool, listPool, retireNumber, type PoolChange, type PoolEntryInput, type PoolNumber } from '../pool/pool.js';
import { parsePoolCsv } from '../pool/csv.js';
import { OUT_OF_SESSION_MODES, PIN_MODES, setNumberHandling, type HandlingChange } from '../pool/handling.js';
import { defaultCountry, withDb } from './context.js';
import { addAuthoritySetting, givenAuthority, onAuthority } from './authority.js';
import type { Authority } from '../authority/authority.js';
import { poolChangeJson, poolNumberJson } from '../json.js';
import { registerPoolSync } from './pool-sync.js';
import { printJson, printLine, printTable, shortTime, shownLines } from './output.js';

/** A mode flag's value: one of `values`, `default` (null), or absent (undefined). */
function choice<T extends string>(text: string | undefined, values: readonly T[], flag: string): T | null | undefined {
  if (text === undefined) return undefined;
  if (text === 'default') return null;
  if ((values as readonly string[]).includes(text)) return text as T;
  throw new VnumError(ErrorCode.InvalidArgument, `invalid ${flag} "${text.slice(0, 30)}": use ${values.join(', ')} or default`);
}


/** The summary's lines: the counts, then the numbers whose state was kept (each line printed on its own, escaped). */
function describeChange(change: PoolChange): string[] {
  const counts = `${change.added} added, ${change.updated} updated, ${change.unchanged} unchanged`;
  if (change.kept.length === 0) return [counts];
  return [`${counts}; ${change.kept.length} kept the state the operator set:`, ...shownLines(change.kept, (k) => `  ${k.number} ${k.state} (${k.reason})`)];
}

function printChange(command: string, change: PoolChange): void {
  const [first, ...rest] = describeChange(change);
  printLine(`${command}: ${first}`);
  for (const line of rest) printLine(line);
}

/** Pages read from the authority at a time by `pool list --authority`. */
const POOL_PAGE = 1000;

/** The whole pool from the authority, in number order, as listPool gives it from a file. */
async function wholePool(authority: Authority): Promise<PoolNumber[]> {
  const numbers: PoolNumber[] = [];
  let after: string | undefined;
  do {
    const page = await authority.listPool({ after, limit: POOL_PAGE });
    numbers.push(...page.numbers);
    after = page.next;
  } while (after !== undefined);
  return numbers;
}

/** Adds to the pool on the file, or with --authority on PostgreSQL: `operator` for pool add, `import` for a provider's export. */
async function addNumbers(command: Command, entries: PoolEntryInput[], rule: 'operator' | 'import'): Promise<PoolChange> {
  const options = { defaultCountry: defaultCountry(command), now: Date.now() };
  const target = givenAuthority(command);
  if (target !== undefined) return onAuthority(target, command, (a) => a.addToPool(entries, { ...options, rule }));
  return withDb(command, (db) => addToPool(db, entries, { ...options, writer: rule }));
}

export function registerPool(program: Command): void {
  const pool = program.command('pool').description('the virtual numbers (DIDs) sessions are masked with');

  addAuthoritySetting(pool.command('add'))
    .description(
      'add virtual numbers, or set their state: available, or reserved with --reserved (this puts a retired number back in service); ' +
        'adding one that is there with the same country and state changes nothing',
    )
    .argument('<number...>', 'numbers, +E.164 or national with --country')
    .option('--country <XX>', 'country of the numbers (ISO code; any country sharing their calling code, e.g. GB for +447911…); also the default for numbers without +')
    .option('--reserved', 'never picked automatically, only when a session asks for it by number')
    .option('--json', 'JSON: {"added","updated","unchanged","kept"}')
    .action(async (numbers: string[], options: { country?: string; reserved?: boolean; json?: boolean }, command: Command) => {
      const entries = numbers.map((number): PoolEntryInput => ({ number, country: options.country, state: options.reserved ? 'reserved' : 'available' }));
      const change = await addNumbers(command, entries, 'operator');
      if (options.json) printJson(poolChangeJson(change));
      else printChange('pool', change);
    });

  addAuthoritySetting(pool.command('import'))
    .description(
      'import a provider export: CSV of number, optional country, optional state. It never undoes the operator: ' +
        'a row without a state leaves a number\'s state as it is, and no row puts a retired number back in service ' +
        '(pool add does); re-importing the same file changes nothing',
    )
    .argument('<file.csv>', 'CSV file; a header row may name the columns number, country, state')
    .option('--country <XX>', 'default country for rows without one')
    .option('--json', 'JSON: {"added","updated","unchanged","kept":[{"number","state","reason"}]}')
    .action(async (file: string, options: { json?: boolean }, command: Command) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new VnumError(ErrorCode.InvalidArgument, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const entries = parsePoolCsv(text);
      if (entries.length === 0) throw new VnumError(ErrorCode.InvalidCsv, `${file} has no numbers`);
      const change = await addNumbers(command, entries, 'import');
      if (options.json) printJson(poolChangeJson(change));
      else printChange('pool import', change);
    });

  registerPoolSync(pool);

  addAuthoritySetting(pool.command('list'))
    .description('list the pool')
    .option('--json', 'JSON: [{"number","country","state","addedAt","pin","outOfSession","fallback"}] (the last three null: vnum serve\'s default)')
    .action(async (options: { json?: boolean }, command: Command) => {
      const target = givenAuthority(command);
      const numbers = target === undefined ? withDb(command, (db) => listPool(db), 'read') : await onAuthority(target, command, wholePool);
      if (options.json) {
        printJson(numbers.map(poolNumberJson));
      } else {
        printTable(
          ['NUMBER', 'COUNTRY', 'STATE', 'ADDED', 'PIN', 'OUT OF SESSION', 'DESK'],
          numbers.map((n) => [
            n.number, n.country, n.state, shortTime(n.addedAt),
            n.handling.pin ?? 'default', n.handling.outOfSession ?? 'default', n.handling.fallback ?? 'default',
          ]),
        );
      }
    });

  addAuthoritySetting(pool.command('set'))
    .description(
      'how a pool number handles callers without a bridge on it: whether they are asked for a PIN, and what a refused caller gets; ' +
        '"default" returns a setting to vnum serve\'s (--pin, --out-of-session, --fallback)',
    )
    .argument('<number>', 'the virtual number')
    .option('--pin <mode>', `${PIN_MODES.join(', ')} or default`)
    .option('--out-of-session <mode>', `${OUT_OF_SESSION_MODES.join(', ')} or default`)
    .option('--fallback <number>', 'the desk for this number\'s refused callers, or default')
    .option('--country <XX>', 'default country for numbers without +')
    .option('--json', 'JSON: {"number","pin","outOfSession","fallback","changed"} (null: vnum serve\'s default)')
    .action(async (number: string, options: { pin?: string; outOfSession?: string; fallback?: string; json?: boolean }, command: Command) => {
      const country = defaultCountry(command);
      const e164 = normaliseNumber(number, country);
      if (options.pin === undefined && options.outOfSession === undefined && options.fallback === undefined) {
        throw new VnumError(ErrorCode.Usage, 'nothing to set: give --pin, --out-of-session or --fallback');
      }
      const change: HandlingChange = {
        pin: choice(options.pin, PIN_MODES, '--pin'),
        outOfSession: choice(options.outOfSession, OUT_OF_SESSION_MODES, '--out-of-session'),
        fallback: options.fallback === undefined ? undefined : options.fallback === 'default' ? null : normaliseNumber(options.fallback, country),
      };
      const target = givenAuthority(command);
      const { handling, changed } =
        target === undefined
          ? withDb(command, (db) => setNumberHandling(db, e164, change), 'write')
          : await onAuthority(target, command, (a) => a.setNumberHandling(e164, change));
      if (options.json) {
        printJson({ number: e164, ...handling, changed });
        return;
      }
      printLine(
        `${e164}: PIN ${handling.pin ?? 'default'}, out of session ${handling.outOfSession ?? 'default'}, desk ${handling.fallback ?? 'default'}${changed ? '' : ' (unchanged)'}`,
      );
    });

  addAuthoritySetting(pool.command('retire'))
    .description('take a number out of service: no new sessions; running ones continue until they end. Only pool add puts it back (a sync never does)')
    .argument('<number>', 'the virtual number')
    .option('--country <XX>', 'default country for a number without +')
    .action(async (number: string, _options: unknown, command: Command) => {
      const e164 = normaliseNumber(number, defaultCountry(command));
      const target = givenAuthority(command);
      const { changed, tookOverFromSync } =
        target === undefined ? withDb(command, (db) => retireNumber(db, e164), 'write') : await onAuthority(target, command, (a) => a.retireNumber(e164));
      if (changed) printLine(`${e164} retired`);
      else if (tookOverFromSync) printLine(`${e164} was retired by a sync; it is now retired by the operator, and no sync puts it back in service`);
      else printLine(`${e164} was already retired`);
    });
}

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ErrorCode, VnumError } from '../errors.js';
import { normaliseNumber } from '../numbers/normalise.js';
import { addToPool, listPool, retireNumber, type PoolChange } from '../pool/pool.js';
import { parsePoolCsv } from '../pool/csv.js';
import { defaultCountry, withDb } from './context.js';
import { isoTime, printJson, printLine, printTable, shortTime } from './output.js';

function describeChange(change: PoolChange): string {
  return `${change.added} added, ${change.updated} updated, ${change.unchanged} unchanged`;
}

export function registerPool(program: Command): void {
  const pool = program.command('pool').description('the virtual numbers (DIDs) sessions are masked with');

  pool
    .command('add')
    .description('add virtual numbers; adding one that is there with the same country and state changes nothing')
    .argument('<number...>', 'numbers, +E.164 or national with --country')
    .option('--country <XX>', 'country of the numbers (ISO code); also the default for numbers without +')
    .option('--reserved', 'never picked automatically, only when a session asks for it by number')
    .option('--json', 'print the counts as JSON')
    .action((numbers: string[], options: { country?: string; reserved?: boolean; json?: boolean }, command: Command) => {
      const change = withDb(command, (db) =>
        addToPool(
          db,
          numbers.map((number) => ({ number, country: options.country, state: options.reserved ? 'reserved' : 'available' })),
          { defaultCountry: defaultCountry(command), now: Date.now() },
        ),
      );
      if (options.json) printJson(change);
      else printLine(`pool: ${describeChange(change)}`);
    });

  pool
    .command('import')
    .description('import a provider export: CSV of number, optional country, optional state (re-importing changes nothing)')
    .argument('<file.csv>', 'CSV file; a header row may name the columns number, country, state')
    .option('--country <XX>', 'default country for rows without one')
    .option('--json', 'print the counts as JSON')
    .action((file: string, options: { json?: boolean }, command: Command) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new VnumError(ErrorCode.InvalidArgument, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const entries = parsePoolCsv(text);
      if (entries.length === 0) throw new VnumError(ErrorCode.InvalidCsv, `${file} has no numbers`);
      const change = withDb(command, (db) => addToPool(db, entries, { defaultCountry: defaultCountry(command), now: Date.now() }));
      if (options.json) printJson(change);
      else printLine(`pool import: ${describeChange(change)}`);
    });

  pool
    .command('list')
    .description('list the pool')
    .option('--json', 'JSON: [{"number","country","state","addedAt"}]')
    .action((options: { json?: boolean }, command: Command) => {
      const numbers = withDb(command, (db) => listPool(db), 'read');
      if (options.json) {
        printJson(numbers.map((n) => ({ number: n.number, country: n.country, state: n.state, addedAt: isoTime(n.addedAt) })));
      } else {
        printTable(['NUMBER', 'COUNTRY', 'STATE', 'ADDED'], numbers.map((n) => [n.number, n.country, n.state, shortTime(n.addedAt)]));
      }
    });

  pool
    .command('retire')
    .description('take a number out of service: no new sessions; running ones continue until they end')
    .argument('<number>', 'the virtual number')
    .option('--country <XX>', 'default country for a number without +')
    .action((number: string, _options: unknown, command: Command) => {
      const e164 = normaliseNumber(number, defaultCountry(command));
      const { changed } = withDb(command, (db) => retireNumber(db, e164), 'write');
      printLine(changed ? `${e164} retired` : `${e164} was already retired`);
    });
}

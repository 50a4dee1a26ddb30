import { Option, type Command } from 'commander';
import { readExport, EXPORT_FORMATS, type ExportFormat } from '../pool/export.js';
import { DEFAULT_MAX_RETIRE_PERCENT, parseRetireShare, percent, retireLimitError, syncPool, type SyncSummary } from '../pool/sync.js';
import { fetchPolicy, FETCH_DEFAULTS, type FetchFlags } from './sync-settings.js';
import { readExportBytes } from '../provider/source.js';
import { defaultCountry, withDb } from './context.js';
import { addAuthoritySetting, givenAuthority, onAuthority } from './authority.js';
import { printJson, printLine, shownLines } from './output.js';

interface SyncFlags extends FetchFlags {
  retireMissing?: boolean;
  maxRetire: string;
  dryRun?: boolean;
  format?: ExportFormat;
  json?: boolean;
}

function describeSync(shown: string, format: ExportFormat, summary: SyncSummary): string[] {
  const head = summary.dryRun ? 'pool sync --dry-run (nothing written)' : 'pool sync';
  const counts = `${summary.added} added, ${summary.retired} retired, ${summary.updated} updated, ${summary.unchanged} unchanged`;
  const limit = summary.retireLimit;
  const lines = [
    `${head}: ${counts} (${summary.listed} numbers listed in ${format.toUpperCase()} from ${shown})`,
    ...shownLines(summary.changes, (c) =>
      c.from === null
        ? `  ${c.number}  added ${c.to.state} (${c.why})`
        : `  ${c.number}  ${c.from.state === c.to.state ? c.to.state : `${c.from.state} -> ${c.to.state}`} (${c.why})`,
    ),
  ];
  if (summary.kept.length > 0) {
    lines.push(`${summary.kept.length} kept the state the operator set:`, ...shownLines(summary.kept, (k) => `  ${k.number}  ${k.state} (${k.reason})`));
  }
  if (summary.unlisted.length > 0) {
    lines.push(
      `${summary.unlisted.length} not in the export, left as they are (--retire-missing retires them):`,
      ...shownLines(summary.unlisted, (u) => `  ${u.number}  ${u.state}`),
    );
  }
  if (limit.retiring > 0 || limit.exceeded) {
    const bound = `at most ${limit.allowed} allowed (--max-retire ${limit.maxPercent}%); ${limit.availableAfter} available after the sync`;
    const verdict = limit.exceeded ? `over the limit, a sync would be refused: ${bound}` : bound;
    lines.push(`retiring ${limit.retiring} of ${limit.available} available numbers (${percent(limit.retiring, limit.available)}): ${verdict}`);
  }
  return lines;
}

export function registerPoolSync(pool: Command): void {
  addAuthoritySetting(pool.command('sync'))
    .description(
      "follow a provider's export (CSV or JSON, a file or an https:// URL): add the numbers it lists; with --retire-missing, " +
        'retire the available numbers it no longer lists (their sessions continue to their end). It never undoes the operator: ' +
        'no reserved number changes, no number the operator retired comes back; a sync retires at most --max-retire of the ' +
        'available numbers, else nothing is written',
    )
    .argument('<source>', 'the export: a file, or an https:// URL')
    .option('--retire-missing', 'retire the available numbers the export no longer lists (a number it lists again comes back)')
    .option(
      '--max-retire <share>',
      'the most of the available numbers one sync may retire (at least one, never the last one, unless 100%); more refuses the whole sync (VNUM_RETIRE_LIMIT)',
      `${DEFAULT_MAX_RETIRE_PERCENT}%`,
    )
    .option('--dry-run', 'print the plan, write nothing (exit 1 if the sync would be refused)')
    .addOption(new Option('--format <format>', 'the export\'s format (default: from the Content-Type, the file name, else its first character)').choices(EXPORT_FORMATS))
    .option('--country <XX>', 'default country for numbers without +')
    .option('--token-file <file>', 'a file holding the token for the URL (owner-only; or VNUM_SYNC_TOKEN_FILE, VNUM_SYNC_TOKEN)')
    .option('--auth <scheme>', 'how the token is sent: bearer (default), basic (a user:password token), or header:<Name>')
    .option('--ca-file <file>', "PEM: trust only these CAs for the URL (a provider's private CA)")
    .option('--allow-http', 'allow a plain http:// URL (never with a token)')
    .option('--timeout <duration>', 'the whole fetch, redirects and body included (1s to 10m)', FETCH_DEFAULTS.timeout)
    .option('--max-size <size>', 'the largest export read (1KiB to 1GiB)', FETCH_DEFAULTS.maxSize)
    .option('--max-redirects <n>', 'redirects followed (0 to 10; the token goes to the first origin only)', FETCH_DEFAULTS.maxRedirects)
    .option('--json', 'JSON: {"dryRun","listed","added","retired","updated","unchanged","changes","kept","unlisted","retireLimit"}')
    .action(async (source: string, flags: SyncFlags, command: Command) => {
      // Every setting judged before a connection is made or a database opened.
      const maxRetirePercent = parseRetireShare(flags.maxRetire);
      const country = defaultCountry(command);
      const policy = fetchPolicy(flags);
      const fetched = await readExportBytes(source, policy);
      const { format, entries } = readExport(fetched.bytes, { format: flags.format, contentType: fetched.contentType, fileName: fetched.fileName });
      const options = { retireMissing: flags.retireMissing === true, maxRetirePercent, dryRun: flags.dryRun === true, defaultCountry: country, now: Date.now() };
      // A dry run only reads: it works on a read-only database, and creates none.
      const target = givenAuthority(command);
      const summary =
        target === undefined
          ? withDb(command, (db) => syncPool(db, entries, options), options.dryRun ? 'read' : 'create')
          : await onAuthority(target, command, (a) => a.syncPool(entries, options));
      if (flags.json) printJson(summary);
      else for (const line of describeSync(fetched.shown, format, summary)) printLine(line);
      if (summary.retireLimit.exceeded) throw retireLimitError(summary);
    });
}

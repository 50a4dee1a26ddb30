import type { Command } from 'commander';
import { collectStats } from '../stats.js';
import { withDb } from './context.js';
import { printJson, printLine, printTable } from './output.js';

export function registerStats(program: Command): void {
  program
    .command('stats')
    .description('pool size by state, sessions by state, the busiest party against the pool')
    .option('--json', 'JSON: {"pool":{"available","reserved","retired","total"},"sessions":{"active","grace","ended"},"busiestParty":{"number","liveSessions","poolAvailable"}}')
    .action((options: { json?: boolean }, command: Command) => {
      const stats = withDb(command, (db) => collectStats(db, Date.now()), 'read');
      if (options.json) return printJson(stats);
      printTable(
        ['POOL', 'AVAILABLE', 'RESERVED', 'RETIRED', 'TOTAL'],
        [['', stats.pool.available, stats.pool.reserved, stats.pool.retired, stats.pool.total]],
      );
      printTable(['SESSIONS', 'ACTIVE', 'GRACE', 'ENDED'], [['', stats.sessions.active, stats.sessions.grace, stats.sessions.ended]]);
      const busiest = stats.busiestParty;
      printLine(
        busiest.number === null
          ? 'busiest party: none (no live sessions)'
          : `busiest party: ${busiest.number} in ${busiest.liveSessions} live sessions; ${busiest.poolAvailable} available numbers ` +
              `(a party can be in at most as many live sessions as there are available numbers)`,
      );
    });
}

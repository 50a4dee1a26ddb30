import type { Command } from 'commander';
import { decideRoute } from '../routing/decide.js';
import { storeBridgeLookup } from '../routing/lookup.js';
import { defaultCountry, withDb } from './context.js';
import { printError, printJson, printLine } from './output.js';
import { ErrorCode } from '../errors.js';

export function registerRoute(program: Command): void {
  program
    .command('route')
    .description('what the call router decides for a call from <caller> to <dialled>, from the same code')
    .argument('<caller>', "the caller's number as the carrier delivers it")
    .argument('<dialled>', 'the virtual number dialled')
    .option('--country <XX>', 'default country for numbers without + (the router uses VNUM_DEFAULT_COUNTRY)')
    .option('--json', 'JSON: {"status","target","cli","session"}')
    .action((caller: string, dialled: string, options: { json?: boolean }, command: Command) => {
      const decision = withDb(command, (db) => decideRoute({ caller, dialled }, Date.now(), storeBridgeLookup(db), defaultCountry(command)), 'read');
      if (options.json) {
        printJson({ status: decision.status, target: decision.target, cli: decision.cli, session: decision.session });
      } else if (decision.status === 'BRIDGE') {
        printLine(`BRIDGE: dial ${decision.target} presenting ${decision.cli} (session ${decision.session})`);
      } else {
        printLine(`${decision.status}${decision.session ? ` (session ${decision.session})` : ''}: no call is placed`);
      }
      // An invalid number is bad input: say why and exit 1, as for any other command.
      if (decision.status === 'INVALID') {
        printError(decision.code ?? ErrorCode.InvalidNumber, decision.reason ?? 'invalid number');
        process.exitCode = 1;
      }
    });
}

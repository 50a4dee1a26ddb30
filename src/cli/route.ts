import type { Command } from 'commander';
import { decideRoute, type RouteDecision } from '../routing/decide.js';
import { storeBridgeLookup } from '../routing/lookup.js';
import { ALLOWED_NUMBER_TYPES_OPTION, defaultCountry, numberPolicy, withDb } from './context.js';
import { routeJson } from '../json.js';
import { printError, printJson, printLine } from './output.js';
import { ErrorCode } from '../errors.js';

function describe(decision: RouteDecision): string {
  const session = decision.session ? ` (session ${decision.session})` : '';
  switch (decision.status) {
    case 'BRIDGE':
      return `BRIDGE: dial ${decision.target} presenting ${decision.cli}${session}`;
    case 'NOT_ALLOWED':
      return `NOT_ALLOWED${session}: ${decision.reason}: no call is placed`;
    case 'NOT_POOL':
      return `NOT_POOL: ${decision.reason}: vnum places no call; the dialplan hands the call to VNUM_OTHER_CONTEXT when it is set`;
    default:
      return `${decision.status}${session}: no call is placed`;
  }
}

export function registerRoute(program: Command): void {
  program
    .command('route')
    .description('what the call router decides for a call from <caller> to <dialled>, from the same code')
    .argument('<caller>', "the caller's number as the carrier delivers it")
    .argument('<dialled>', 'the virtual number dialled')
    .option('--country <XX>', 'default country for numbers without + (the router uses VNUM_DEFAULT_COUNTRY)')
    .option(...ALLOWED_NUMBER_TYPES_OPTION)
    .option('--json', 'JSON: {"status","target","cli","session","reason"}')
    .action((caller: string, dialled: string, options: { json?: boolean }, command: Command) => {
      const routeOptions = { defaultCountry: defaultCountry(command), policy: numberPolicy(command) };
      const decision = withDb(command, (db) => decideRoute({ caller, dialled }, Date.now(), storeBridgeLookup(db), routeOptions), 'read');
      if (options.json) {
        printJson(routeJson(decision));
      } else {
        printLine(describe(decision));
      }
      // An invalid number is bad input: say why and exit 1, as for any other command.
      if (decision.status === 'INVALID') {
        printError(decision.code ?? ErrorCode.InvalidNumber, decision.reason ?? 'invalid number');
        process.exitCode = 1;
      }
    });
}

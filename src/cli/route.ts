import type { Command } from 'commander';
import { answerFor, ERROR_ANSWER, type RouteAnswer } from '../routing/answer.js';
import { decideRoute, type RouteDecision } from '../routing/decide.js';
import { storeBridgeLookup } from '../routing/lookup.js';
import { ALLOWED_NUMBER_TYPES_OPTION, defaultCountry, numberPolicy, withDb } from './context.js';
import { routeJson } from '../json.js';
import { printError, printJson, printLine } from './output.js';
import { ErrorCode } from '../errors.js';

function describe(answer: RouteAnswer, reason: string | undefined): string {
  const session = answer.session ? ` (session ${answer.session})` : '';
  switch (answer.status) {
    case 'BRIDGE':
      return `BRIDGE: dial ${answer.target} presenting ${answer.presentedCallerId}${session}`;
    case 'NOT_ALLOWED':
      return `NOT_ALLOWED${session}: ${reason}: no call is placed`;
    case 'NOT_POOL':
      return `NOT_POOL: ${reason}: vnum places no call; the dialplan hands the call to VNUM_OTHER_CONTEXT when it is set`;
    default:
      return `${answer.status}${session}: no call is placed`;
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
      const decision: RouteDecision = withDb(command, (db) => decideRoute({ caller, dialled }, Date.now(), storeBridgeLookup(db), routeOptions), 'read');
      // What the router would answer, checked as it checks it.
      const answer = answerFor(decision) ?? ERROR_ANSWER;
      if (options.json) {
        printJson(routeJson(decision));
      } else {
        printLine(describe(answer, decision.reason));
      }
      // An invalid number is bad input: say why and exit 1, as for any other command.
      if (decision.status === 'INVALID') {
        printError(decision.code ?? ErrorCode.InvalidNumber, decision.reason ?? 'invalid number');
        process.exitCode = 1;
      }
    });
}

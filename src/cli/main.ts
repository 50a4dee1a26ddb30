#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { createRequire } from 'node:module';
import { VnumError } from '../errors.js';
import { registerCalls } from './calls.js';
import { registerHealth } from './health.js';
import { registerPool } from './pool.js';
import { registerRoute } from './route.js';
import { registerServe } from './serve.js';
import { registerSession } from './session.js';
import { registerStats } from './stats.js';

const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };

export const EXIT_OK = 0;
export const EXIT_USER_ERROR = 1;
export const EXIT_INTERNAL_ERROR = 2;

function buildProgram(): Command {
  const program = new Command('vnum')
    .description('number masking on your own Asterisk: virtual-number pool, masked sessions, FastAGI router')
    .version(version, '-V, --version')
    .option('--db <file>', 'SQLite database (default: $VNUM_DB, else ~/.local/share/vnum/vnum.db)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });
  registerPool(program);
  registerSession(program);
  registerRoute(program);
  registerStats(program);
  registerServe(program);
  registerCalls(program);
  registerHealth(program);
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return program;
}

function fail(error: unknown): number {
  if (error instanceof CommanderError) {
    // Help and --version are successes; any usage error is the user's.
    return error.exitCode === 0 ? EXIT_OK : EXIT_USER_ERROR;
  }
  if (error instanceof VnumError) {
    process.stderr.write(`vnum: ${error.message} [${error.code}]\n`);
    return error.isUserError ? EXIT_USER_ERROR : EXIT_INTERNAL_ERROR;
  }
  process.stderr.write(`vnum: internal error: ${error instanceof Error ? error.message : String(error)}\n`);
  return EXIT_INTERNAL_ERROR;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  process.exitCode = fail(error);
}

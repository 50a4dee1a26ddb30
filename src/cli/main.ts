#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { ErrorCode, VnumError } from '../errors.js';
import { registerApi } from './api.js';
import { registerApiKey } from './apikey.js';
import { VERSION } from './version.js';
import { registerCalls } from './calls.js';
import { registerCluster } from './cluster.js';
import { registerHealth } from './health.js';
import { EXIT_OK, fail } from './failure.js';
import { registerPool } from './pool.js';
import { registerReplica } from './replica.js';
import { registerRoute } from './route.js';
import { registerServe } from './serve.js';
import { registerSession } from './session.js';
import { registerStats } from './stats.js';
import { registerWebhooks } from './webhooks.js';

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Commander's usage errors as ours: one line, VNUM_USAGE, pointing at the
 * command's help. Help and --version (exit code 0) pass through as successes.
 */
function usageErrors(command: Command): void {
  command.exitOverride((error: CommanderError) => {
    if (error.exitCode === 0) throw error;
    const help = `see "${commandPath(command)} --help"`;
    if (error.code === 'commander.help') {
      const subcommands = command.commands.map((c) => c.name()).filter((n) => n !== 'help');
      throw new VnumError(ErrorCode.Usage, `missing command: one of ${subcommands.join(', ')} (${help})`);
    }
    throw new VnumError(ErrorCode.Usage, `${error.message.replace(/^error: /, '')} (${help})`);
  });
  for (const sub of command.commands) usageErrors(sub);
}

function buildProgram(): Command {
  const program = new Command('vnum')
    .description('number masking on your own Asterisk: virtual-number pool, masked sessions, FastAGI router')
    .version(VERSION, '-V, --version')
    .option('--db <file>', 'SQLite database (default: $VNUM_DB, else ~/.local/share/vnum/vnum.db)')
    // Errors are printed once, as one line, by fail(); help goes to stdout as usual.
    .configureOutput({ writeErr: () => undefined, outputError: () => undefined });
  registerPool(program);
  registerSession(program);
  registerRoute(program);
  registerStats(program);
  registerServe(program);
  registerCalls(program);
  registerHealth(program);
  registerApi(program);
  registerApiKey(program);
  registerWebhooks(program);
  registerReplica(program);
  registerCluster(program);
  usageErrors(program);
  return program;
}

// A reader that stops early (`vnum session list | head`) is not a failure: stop quietly.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK);
  throw error;
});

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  process.exitCode = fail(error);
}

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built executable, as `npm test` builds it and as users run it. */
export const VNUM_BIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function vnum(args: string[], env: Record<string, string | undefined> = {}): CliResult {
  const merged: Record<string, string | undefined> = { ...process.env, VNUM_DEFAULT_COUNTRY: undefined, VNUM_DB: undefined, ...env };
  const result = spawnSync(process.execPath, [VNUM_BIN, ...args], {
    encoding: 'utf8',
    env: Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
    timeout: 30_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built executable, as `npm test` builds it and as users run it. */
export const VNUM_BIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunAs {
  /** Run as this user and group (the test must be root to switch). */
  uid?: number;
  gid?: number;
  /** Run under this umask, e.g. '000'. */
  umask?: string;
}

/**
 * Who "another, unprivileged user" is in tests: as root, nobody (root ignores
 * file modes, so a mode test run as root proves nothing); otherwise the
 * developer's own account, to whom modes already apply.
 */
export const UNPRIVILEGED: RunAs = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

export function vnum(args: string[], env: Record<string, string | undefined> = {}, as: RunAs = {}): CliResult {
  const merged: Record<string, string | undefined> = { ...process.env, VNUM_DEFAULT_COUNTRY: undefined, VNUM_DB: undefined, ...env };
  const [command, argv] =
    as.umask === undefined
      ? [process.execPath, [VNUM_BIN, ...args]]
      : ['sh', ['-c', `umask ${as.umask} && exec "$0" "$@"`, process.execPath, VNUM_BIN, ...args]];
  const result = spawnSync(command, argv, {
    encoding: 'utf8',
    env: Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
    timeout: 30_000,
    ...(as.uid !== undefined ? { uid: as.uid } : {}),
    ...(as.gid !== undefined ? { gid: as.gid } : {}),
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

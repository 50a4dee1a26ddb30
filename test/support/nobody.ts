import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const NOBODY = 65534;
const root = process.getuid?.() === 0;

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
export const UNPRIVILEGED: RunAs = root ? { uid: NOBODY, gid: NOBODY } : {};

/**
 * A new temporary folder that UNPRIVILEGED can reach: under /tmp as root,
 * whatever TMPDIR says (it may be a folder nobody cannot enter).
 */
export function tempDirFor(prefix: string): string {
  return mkdtempSync(join(root ? '/tmp' : tmpdir(), prefix));
}

/**
 * Spawn options that run a child as `nobody` when the test runs as root (as
 * it is otherwise), with a TMPDIR of its own: the test's TMPDIR may be a
 * folder nobody cannot enter. `cleanup` removes that folder.
 */
export function asNobody(env: NodeJS.ProcessEnv = process.env): {
  options: { uid?: number; gid?: number; env: NodeJS.ProcessEnv; cwd: string };
  cleanup(): void;
} {
  if (!root) return { options: { env, cwd: '/' }, cleanup: () => {} };
  const tmp = tempDirFor('vnum-nobody-');
  chownSync(tmp, NOBODY, NOBODY);
  return {
    options: { uid: NOBODY, gid: NOBODY, env: { ...env, TMPDIR: tmp }, cwd: tmp },
    cleanup: () => rmSync(tmp, { recursive: true, force: true }),
  };
}

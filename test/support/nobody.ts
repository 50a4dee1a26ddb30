import { chownSync, mkdtempSync, rmSync } from 'node:fs';

const NOBODY = 65534;

/**
 * Spawn options that run a child as `nobody` when the test runs as root (as
 * it is otherwise), with a TMPDIR of its own: the test's TMPDIR may be a
 * folder nobody cannot enter. `cleanup` removes that folder.
 */
export function asNobody(env: NodeJS.ProcessEnv = process.env): {
  options: { uid?: number; gid?: number; env: NodeJS.ProcessEnv; cwd: string };
  cleanup(): void;
} {
  if (process.getuid?.() !== 0) return { options: { env, cwd: '/' }, cleanup: () => {} };
  // Under /tmp, which every user can enter, whatever TMPDIR says.
  const tmp = mkdtempSync('/tmp/vnum-nobody-');
  chownSync(tmp, NOBODY, NOBODY);
  return {
    options: { uid: NOBODY, gid: NOBODY, env: { ...env, TMPDIR: tmp }, cwd: tmp },
    cleanup: () => rmSync(tmp, { recursive: true, force: true }),
  };
}

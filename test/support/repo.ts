import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout: the nearest folder above this module with a package.json (also when the bench runs it compiled). */
export const repoRoot = ((): string => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
})();

export function repoPath(...parts: string[]): string {
  return path.join(repoRoot, ...parts);
}

export function readRepo(...parts: string[]): string {
  return readFileSync(repoPath(...parts), 'utf8');
}

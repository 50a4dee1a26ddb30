/**
 * The house's import rules, as data, and a check over the import graph
 * (docs/architecture.md draws the same thing). Every product module belongs to
 * a room; rooms have floors; an import may only run to a lower floor or within
 * its own room, and no modules import each other in a circle.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { filesUnder } from './ship.js';
import { repoPath, repoRoot } from './repo.js';

/** Rooms, lowest floor first. Rooms on one floor may not import each other. */
export const FLOORS: ReadonlyArray<readonly string[]> = [
  ['agi'],
  ['src/base'],
  ['src/store', 'src/ami', 'src/provider'],
  ['src/replica'],
  ['src/webhooks'],
  ['src/numbers', 'src/access'],
  ['src/pool'],
  ['src/session'],
  ['src/routing'],
  ['src/calls'],
  ['src/stats'],
  ['src/metrics'],
  ['src/authority', 'src/json'],
  ['src/api'],
  ['src/cli'],
];

/** The modules at src/'s top level that everything may use: errors, logging, time. */
const BASE = new Set(['src/errors.ts', 'src/log.ts', 'src/time.ts', 'src/duration.ts']);

/** The room of a module (a path from the repository root). */
export function roomOf(file: string): string | undefined {
  const parts = file.split('/');
  if (parts[0] === 'agi') return 'agi';
  if (parts[0] !== 'src') return undefined;
  if (parts.length > 2) return `src/${parts[1]}`;
  if (BASE.has(file)) return 'src/base';
  return `src/${path.basename(file, '.ts')}`;
}

export interface Import {
  from: string;
  to: string;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s(?:[^'";]*?\sfrom\s)?\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Every relative import between product modules (type-only ones too: they are arrows in the drawing). */
export function productImports(): { modules: string[]; imports: Import[] } {
  const modules = ['agi', 'src'].flatMap((dir) =>
    filesUnder(repoPath(dir), (f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => path.relative(repoRoot, f)),
  );
  const imports: Import[] = [];
  for (const from of modules) {
    const text = readFileSync(repoPath(from), 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const specifier = (m[1] ?? m[2])!;
      if (!specifier.startsWith('.')) continue;
      const to = path.relative(repoRoot, path.resolve(path.dirname(repoPath(from)), specifier)).replace(/\.js$/, '.ts');
      imports.push({ from, to });
    }
  }
  return { modules, imports };
}

/** What breaks the rules: an import to a higher floor or across one floor, a module outside every room, a circle. */
export function houseViolations(modules: readonly string[], imports: readonly Import[]): string[] {
  const floorOf = new Map<string, number>();
  FLOORS.forEach((rooms, floor) => rooms.forEach((room) => floorOf.set(room, floor)));
  const problems: string[] = [];
  for (const module of modules) {
    const room = roomOf(module);
    if (room === undefined || !floorOf.has(room)) problems.push(`${module} is in no room of the house (test/support/house.ts, FLOORS)`);
  }
  for (const { from, to } of imports) {
    const [a, b] = [roomOf(from), roomOf(to)];
    if (a === undefined || b === undefined || a === b) continue;
    const [fa, fb] = [floorOf.get(a), floorOf.get(b)];
    if (fa === undefined || fb === undefined) continue;
    if (fb >= fa) problems.push(`${from} imports ${to}: ${a} may not import ${b} (${fb === fa ? 'same floor' : 'a floor up'})`);
  }
  // Circles between modules: a depth-first search that meets a module still on its path.
  const next = new Map<string, string[]>();
  for (const { from, to } of imports) next.set(from, [...(next.get(from) ?? []), to]);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (module: string): void => {
    state.set(module, 'open');
    stack.push(module);
    for (const to of next.get(module) ?? []) {
      if (state.get(to) === 'open') problems.push(`circle: ${[...stack.slice(stack.indexOf(to)), to].join(' -> ')}`);
      else if (!state.has(to)) visit(to);
    }
    stack.pop();
    state.set(module, 'done');
  };
  for (const module of modules) if (!state.has(module)) visit(module);
  return problems;
}

/**
 * The house map (docs/architecture.md) holds: imports run down the floors of
 * test/support/house.ts, never up or across one, in no circle; the composition
 * root is the one module that starts the long-running parts.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FLOORS, houseViolations, productImports } from '../support/house.js';
import { readRepo, repoPath } from '../support/repo.js';

describe('the house', () => {
  const { modules, imports } = productImports();

  it('finds the product\'s modules and their imports', () => {
    expect(modules).toContain('agi/server.ts');
    expect(modules).toContain('src/cli/serve.ts');
    expect(imports).toContainEqual({ from: 'src/cli/serve.ts', to: 'agi/server.ts' });
  });

  it('every import runs down a floor or stays in its room, and none forms a circle', () => {
    expect(houseViolations(modules, imports)).toEqual([]);
  });

  it('agi/ imports nothing from src/', () => {
    expect(imports.filter((i) => i.from.startsWith('agi/') && i.to.startsWith('src/'))).toEqual([]);
  });

  it('only the composition root starts the router, the call log, AMI and the FastAGI server', () => {
    const starters = /(?<!function )\b(startFastAgiServer|createCallRouter)\(|\bnew (CallTracker|AmiClient)\(/;
    const starting = modules.filter((m) => m.startsWith('src/') && starters.test(readRepo(m)));
    expect(starting).toEqual(['src/cli/serve.ts']);
  });

  it('the check can fail: an import up a floor, across one, and a circle are each reported', () => {
    const fake = ['agi/server.ts', 'src/store/db.ts', 'src/ami/client.ts', 'src/routing/decide.ts', 'src/routing/lookup.ts', 'src/new/thing.ts'];
    const problems = houseViolations(fake, [
      { from: 'agi/server.ts', to: 'src/routing/decide.ts' },
      { from: 'src/store/db.ts', to: 'src/ami/client.ts' },
      { from: 'src/routing/decide.ts', to: 'src/routing/lookup.ts' },
      { from: 'src/routing/lookup.ts', to: 'src/routing/decide.ts' },
    ]);
    expect(problems).toEqual([
      'src/new/thing.ts is in no room of the house (test/support/house.ts, FLOORS)',
      'agi/server.ts imports src/routing/decide.ts: agi may not import src/routing (a floor up)',
      'src/store/db.ts imports src/ami/client.ts: src/store may not import src/ami (same floor)',
      'circle: src/routing/decide.ts -> src/routing/lookup.ts -> src/routing/decide.ts',
    ]);
  });

  it('docs/architecture.md\'s map names every room', () => {
    const doc = readRepo('docs/architecture.md');
    const map = doc.slice(0, doc.indexOf('\n## '));
    const mentioned = (room: string): number => {
      // a room that is one module (src/stats.ts, src/json.ts) is named as its file
      const name = room === 'src/base' ? 'src/errors.ts' : existsSync(repoPath(`${room}.ts`)) ? `${room}.ts` : `${room}/`;
      const at = map.indexOf(`\`${name}`);
      expect(at, `${name} in the map`).toBeGreaterThan(-1);
      return at;
    };
    for (const rooms of FLOORS) for (const room of rooms) mentioned(room);
  });
});

/**
 * Shared by the ship-*.test.ts checks: what docker/, deploy/ and the package
 * ship, read the way their tools read them (Dockerfiles with dockerfile-ast,
 * compose with yaml, Asterisk and systemd files as INI sections).
 */
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoPath } from './repo.js';

// --- Dockerfiles -------------------------------------------------------------

export interface DockerInstruction {
  keyword: string;
  /** Arguments as dockerfile-ast splits them (shell form: words; JSON form: one raw word). */
  args: string[];
  /** The text after the keyword and flags, continuation lines joined. */
  content: string;
  flags: Record<string, string>;
  line: number;
}

export interface DockerStage {
  /** The FROM image with ARG defaults substituted. */
  image: string;
  name: string | null;
  instructions: DockerInstruction[];
}

export interface ParsedDockerfile {
  text: string;
  /** ARGs before the first FROM, with their defaults. */
  args: Record<string, string>;
  stages: DockerStage[];
}

function flagsOf(instruction: Instruction): Record<string, string> {
  const withFlags = instruction as Instruction & { getFlags?: () => Array<{ getName(): string; getValue(): string | null }> };
  const flags: Record<string, string> = {};
  for (const flag of withFlags.getFlags?.() ?? []) flags[flag.getName()] = flag.getValue() ?? '';
  return flags;
}

export function parseDockerfile(file: string): ParsedDockerfile {
  const text = readFileSync(file, 'utf8');
  const dockerfile = DockerfileParser.parse(text);
  const args: Record<string, string> = {};
  for (const arg of dockerfile.getInitialARGs()) {
    const property = arg.getProperty();
    if (property) args[property.getName()] = property.getValue() ?? '';
  }
  const substitute = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => args[(a ?? b)!] ?? '');
  const stages: DockerStage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    const keyword = instruction.getKeyword();
    if (keyword === 'FROM') {
      const words = instruction.getArguments().map((a) => a.getValue());
      stages.push({
        image: substitute(words[0] ?? ''),
        name: words[1]?.toUpperCase() === 'AS' ? (words[2] ?? null) : null,
        instructions: [],
      });
      continue;
    }
    if (stages.length === 0) continue; // the initial ARGs
    const flags = flagsOf(instruction);
    let content = instruction.getArgumentsContent() ?? '';
    // getArgumentsContent() keeps flags (--chown=...) in COPY/ADD: drop them.
    if (Object.keys(flags).length > 0) content = content.replace(/^(\s*--\S+\s+)+/, '');
    stages.at(-1)!.instructions.push({
      keyword,
      args: instruction.getArguments().map((a) => a.getValue()).filter((a) => !a.startsWith('--') || keyword === 'RUN'),
      content,
      flags,
      line: instruction.getRange().start.line + 1,
    });
  }
  return { text, args, stages };
}

/** A JSON-form (exec form) argument list: `["vnum", "serve"]`. */
export function execForm(content: string): string[] {
  const parsed: unknown = JSON.parse(content);
  if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'string')) {
    throw new Error(`not an exec-form list: ${content}`);
  }
  return parsed as string[];
}

/** `COPY a b ./dest/`: sources and destination (flags removed). */
export function copyParts(instruction: DockerInstruction): { sources: string[]; dest: string } {
  const words = instruction.args.filter((a) => !a.startsWith('--'));
  if (words.length < 2) throw new Error(`COPY with fewer than two arguments at line ${instruction.line}`);
  return { sources: words.slice(0, -1), dest: words.at(-1)! };
}

/**
 * Whether a .dockerignore keeps `file` (a path relative to the build context)
 * in the context. Supports the forms our ignore files use: `*`, and exact
 * paths or folders, each optionally negated with `!`; the last match wins.
 */
export function keptByDockerignore(ignoreText: string, file: string): boolean {
  let kept = true;
  for (const raw of ignoreText.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    const pattern = (negated ? line.slice(1) : line).replace(/\/$/, '');
    if (pattern !== '*' && /[*?[\]]/.test(pattern)) {
      throw new Error(`dockerignore pattern this check does not understand: ${line}`);
    }
    const matches = pattern === '*' || file === pattern || file.startsWith(`${pattern}/`);
    if (matches) kept = negated;
  }
  return kept;
}

// --- INI-like files (Asterisk, systemd) --------------------------------------

export interface IniSection {
  name: string;
  /** [name](!) templates and such: the text after the closing bracket. */
  suffix: string;
  entries: Array<[string, string]>;
}

/**
 * Sections in order. `asterisk`: `;` comments anywhere on a line, `=>` read
 * as `=`, `#include "file"` and `#tryinclude "file"` kept as entries named
 * so. `systemd`:
 * whole-line `#` and `;` comments only.
 */
export function parseIni(text: string, dialect: 'asterisk' | 'systemd'): IniSection[] {
  const sections: IniSection[] = [];
  const current = (): IniSection => {
    if (sections.length === 0) sections.push({ name: '', suffix: '', entries: [] });
    return sections.at(-1)!;
  };
  for (const raw of text.split('\n')) {
    let line = dialect === 'asterisk' ? raw.replace(/;.*$/, '').trim() : raw.trim();
    if (line === '' || (dialect === 'systemd' && /^[#;]/.test(line))) continue;
    if (dialect === 'asterisk' && line.startsWith('#')) {
      const include = /^(#include|#tryinclude)\s+"([^"]+)"$/.exec(line);
      if (!include) throw new Error(`directive this check does not understand: ${raw}`);
      current().entries.push([include[1]!, include[2]!]);
      continue;
    }
    const header = /^\[([^\]]+)\](.*)$/.exec(line);
    if (header) {
      sections.push({ name: header[1]!, suffix: header[2]!.trim(), entries: [] });
      continue;
    }
    if (dialect === 'asterisk') line = line.replace(/^([^=]+?)\s*=>\s*/, '$1=');
    const eq = line.indexOf('=');
    if (eq < 0) throw new Error(`not a key = value line: ${raw}`);
    current().entries.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return sections;
}

/** The values of `key` in every section named `name` (Asterisk repeats section names per type). */
export function iniValues(sections: IniSection[], name: string, key: string): string[] {
  return sections.filter((s) => s.name === name).flatMap((s) => s.entries.filter(([k]) => k === key).map(([, v]) => v));
}

export function iniSection(sections: IniSection[], name: string, type?: string): IniSection {
  const found = sections.filter((s) => s.name === name && (type === undefined || s.entries.some(([k, v]) => k === 'type' && v === type)));
  if (found.length !== 1) throw new Error(`expected one [${name}]${type ? ` of type ${type}` : ''}, found ${found.length}`);
  return found[0]!;
}

// --- source ------------------------------------------------------------------

/** Files under `dir` (recursively), or `[dir]` when it is a file. */
export function filesUnder(dir: string, keep: (file: string) => boolean = () => true): string[] {
  if (!statSync(dir).isDirectory()) return keep(dir) ? [dir] : [];
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...filesUnder(full, keep));
    else if (keep(full)) out.push(full);
  }
  return out.sort();
}

/**
 * Every environment variable the product reads, from src/ and agi/:
 * `process.env.NAME`, `env.NAME` (a settings function's environment
 * parameter), commander's `.env('NAME')` on an option, and `env: 'NAME'` in
 * a setting's spec (src/cli/settings.ts).
 */
export function envVarsReadByProduct(): Set<string> {
  const names = new Set<string>();
  for (const dir of ['src', 'agi']) {
    for (const file of filesUnder(repoPath(dir), (f) => f.endsWith('.ts'))) {
      const text = readFileSync(file, 'utf8');
      const patterns = [
        /process\.env\.([A-Z_][A-Z0-9_]*)|process\.env\[['"]([A-Z_][A-Z0-9_]*)['"]\]/g,
        /\benv\.(VNUM_[A-Z0-9_]+)/g,
        /\.env\(['"](VNUM_[A-Z0-9_]+)['"]\)/g,
        /\benv: ['"](VNUM_[A-Z0-9_]+)['"]/g,
      ];
      for (const pattern of patterns) for (const m of text.matchAll(pattern)) names.add((m[1] ?? m[2])!);
    }
  }
  return names;
}

// --- systemd units ------------------------------------------------------------

const analyzeBinary = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
/** Why systemd-analyze cannot check a unit here, or null. */
export const noSystemdAnalyze = analyzeBinary ? null : 'systemd-analyze is not installed here (Debian: apt-get install systemd)';

/**
 * A shipped unit as systemd-analyze checks it. The unit runs as shipped,
 * except ExecStart's program: `verify` insists that it exists, and
 * /usr/local/bin/vnum is created by the install (docker/router/install-vnum.sh
 * ... /usr/local/bin), not on a CI machine; a stand-in executable at a
 * temporary path takes its place, nothing else changes.
 */
export function systemdCheck(unitName: string): {
  /** The unit text written where systemd-analyze can read it, with the stand-in. */
  unitFile(text: string): string;
  verify(file: string): { status: number | null; output: string };
  /** `security --offline`'s overall exposure level (0 to 10). */
  exposure(file: string): number;
  remove(): void;
} {
  const scratch = mkdtempSync(path.join(tmpdir(), 'vnum-ship-systemd-'));
  return {
    unitFile(text) {
      const stub = path.join(scratch, 'vnum');
      writeFileSync(stub, '#!/bin/sh\nexit 0\n');
      chmodSync(stub, 0o755);
      const replaced = text.replace(/^ExecStart=\/usr\/local\/bin\/vnum /m, `ExecStart=${stub} `);
      if (replaced === text) throw new Error('ExecStart=/usr/local/bin/vnum not found in the unit');
      const file = path.join(scratch, unitName);
      writeFileSync(file, replaced);
      return file;
    },
    verify(file) {
      const r = spawnSync(analyzeBinary, ['verify', '--man=no', file], { encoding: 'utf8', timeout: 60_000 });
      return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
    },
    exposure(file) {
      const r = spawnSync(analyzeBinary, ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8', timeout: 60_000 });
      const level = new RegExp(`Overall exposure level for ${unitName.replace(/\./g, '\\.')}: (\\d+\\.\\d)`).exec(`${r.stdout}${r.stderr}`);
      if (!level) throw new Error(`systemd-analyze security gave no level: ${r.stdout}${r.stderr}`);
      return Number(level[1]);
    },
    remove: () => rmSync(scratch, { recursive: true, force: true }),
  };
}

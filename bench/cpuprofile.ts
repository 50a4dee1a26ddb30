// Summarise a V8 CPU profile (node --cpu-prof) as a few short tables, never
// the raw JSON: where the time went by function (self and inclusive) and by
// module (a package under node_modules, node's internals, or a project file).
//
//   node dist-bench/bench/cpuprofile.js <file.cpuprofile> [--top 25] [--focus <regexp>]
//
// --focus: also the inclusive share of every function whose name or file
// matches, e.g. --focus 'decideRoute|normalise|parsePhoneNumber'.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  self: Map<string, number>;
  inclusive: Map<string, number>;
  modules: Map<string, number>;
}

function moduleOf(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node:internal';
  const project = /\/(dist(?:-bench)?\/)?((?:src|agi|bench|test)\/.*)$/.exec(url);
  return project ? project[2]! : url;
}

function label(frame: CallFrame): string {
  const where = frame.url === '' ? '' : ` ${moduleOf(frame.url, frame.functionName)}:${frame.lineNumber + 1}`;
  return `${frame.functionName || '(anonymous)'}${where}`;
}

export function summarise(profile: Profile): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const modules = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    // timeDeltas[i] is the time before sample i; attribute the next delta to it.
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const node = byId.get(profile.samples[i]!)!;
    total += ms;
    if (node.callFrame.functionName === '(idle)') {
      idle += ms;
      continue;
    }
    const key = label(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + ms);
    const mod = moduleOf(node.callFrame.url, node.callFrame.functionName);
    modules.set(mod, (modules.get(mod) ?? 0) + ms);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = label(byId.get(id)!.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + ms);
    }
  }
  return { totalMs: total, idleMs: idle, self, inclusive, modules };
}

function table(title: string, entries: Map<string, number>, busyMs: number, top: number, filter?: RegExp): string {
  const rows = [...entries]
    .filter(([k]) => k !== '(root)' && (filter === undefined || filter.test(k)))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top);
  const lines = rows.map(([k, ms]) => `  ${((ms / busyMs) * 100).toFixed(1).padStart(5)}%  ${ms.toFixed(0).padStart(7)} ms  ${k}`);
  return `${title}\n${lines.join('\n')}\n`;
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string' }, focus: { type: 'string' } },
  });
  if (positionals.length !== 1) {
    process.stderr.write('usage: node dist-bench/bench/cpuprofile.js <file.cpuprofile> [--top 25] [--focus <regexp>]\n');
    process.exitCode = 1;
    return;
  }
  const top = Number(values.top ?? 25);
  const summary = summarise(JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile);
  const busy = summary.totalMs - summary.idleMs;
  let out = `${positionals[0]}: ${summary.totalMs.toFixed(0)} ms sampled, ${busy.toFixed(0)} ms busy (${((busy / summary.totalMs) * 100).toFixed(0)}%); shares below are of busy time\n\n`;
  out += table('by module (self)', summary.modules, busy, top);
  out += `\n${table('by function (self)', summary.self, busy, top)}`;
  out += `\n${table('by function (inclusive)', summary.inclusive, busy, top)}`;
  if (values.focus) out += `\n${table(`inclusive, matching /${values.focus}/`, summary.inclusive, busy, top, new RegExp(values.focus))}`;
  process.stdout.write(out);
}

if (process.argv[1] !== undefined && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) main();

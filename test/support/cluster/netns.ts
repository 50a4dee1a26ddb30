import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { atExit, ownerGone } from './cleanup.js';

/**
 * Hosts as network namespaces: each host is a netns joined to this machine
 * by a veth pair on a /30 of its own, inside a /24 of 198.18.0.0/15 (the
 * range reserved for benchmarking; nothing else here uses it) claimed for
 * this run, so concurrent runs never share an address:
 *
 *   this machine  198.18.<c>.<4i+1>  (vn<c>h<i>)  <-veth->  (vn<c>n<i>)  198.18.<c>.<4i+2>  netns vnum-<pid>-<i>
 *
 * A host reaches this machine's address on its link and nothing else (no
 * default route, no forwarding). `cut()` takes the link down (both ends go
 * dark: established TCP connections see silence, not a reset), `heal()`
 * brings it back. Only these namespaces, links and addresses are ever
 * touched; they are removed at the end, at exit, on a signal, or by the
 * next run when this one was killed (the claim records its owner's pid).
 */

const CLAIMS = path.join(tmpdir(), 'vnum-netns-claims');

function ip(args: string[]): string {
  const run = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (run.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${run.stderr.trim()}`);
  return run.stdout;
}

const hasIp = (): boolean => spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status === 0;

/** Whether namespaces can be made here: root, and iproute2 or apt to install it. */
export function netnsBlocker(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'not running as root (ip netns needs it)';
  if (!hasIp() && spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status !== 0) return 'no iproute2 (ip netns) and no apt-get';
  return null;
}

/** iproute2 from Debian when `ip` is missing (a bare machine). */
function ensureIproute2(): void {
  if (hasIp()) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', 'iproute2']]) {
    const run = spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', ...args], { encoding: 'utf8', env, timeout: 600_000 });
    if (run.status !== 0) throw new Error(`apt-get ${args[0]} (iproute2) failed: ${run.stderr.slice(-2000)}`);
  }
}

interface Claim {
  owner: number;
  netns: string[];
}

/** Remove what runs that are gone left behind, then claim a free /24 (mkdir is atomic). */
function claimSubnet(count: number): { c: number; dir: string; netns: string[] } {
  mkdirSync(CLAIMS, { recursive: true });
  for (const name of readdirSync(CLAIMS)) {
    const dir = path.join(CLAIMS, name);
    const file = path.join(dir, 'claim.json');
    let claim: Claim | undefined;
    try {
      claim = JSON.parse(readFileSync(file, 'utf8')) as Claim;
    } catch {
      claim = undefined;
    }
    if (claim && !ownerGone(claim.owner)) continue;
    // No readable claim yet: another run may be writing it this instant.
    if (!claim && (existsSync(file) || Date.now() - statSync(dir).mtimeMs < 60_000)) continue;
    for (const ns of claim?.netns ?? []) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
  for (let c = 0; c < 256; c++) {
    const dir = path.join(CLAIMS, String(c));
    try {
      mkdirSync(dir);
    } catch {
      continue;
    }
    const netns = Array.from({ length: count }, (_, i) => `vnum-${process.pid}-${c}-${i}`);
    writeFileSync(path.join(dir, 'claim.json'), JSON.stringify({ owner: process.pid, netns } satisfies Claim));
    return { c, dir, netns };
  }
  throw new Error('no free 198.18.x.0/24 for test hosts');
}

export interface Host {
  /** The namespace's name. */
  netns: string;
  /** This machine's address on the host's link: what the host connects to. */
  gateway: string;
  /** The host's own address. */
  address: string;
  /** Spawn a process inside the host (its pid is the process's own: ip netns exec execs it). */
  spawn(command: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** Take the link down: the host hears nothing and is heard by no one. */
  cut(): void;
  heal(): void;
}

export interface Hosts {
  hosts: Host[];
  /** The claimed /24, for pg_hba. */
  subnet: string;
  remove(): void;
}

export function createHosts(count: number): Hosts {
  if (count < 1 || count > 60) throw new Error('1 to 60 hosts');
  ensureIproute2();
  const claim = claimSubnet(count);
  const c = claim.c;
  const removeAll = (): void => {
    for (const ns of claim.netns) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    rmSync(claim.dir, { recursive: true, force: true });
  };
  const removeAtExit = atExit(removeAll);
  try {
    const hosts = claim.netns.map((netns, i): Host => {
      const outside = `vn${c}h${i}`;
      const inside = `vn${c}n${i}`;
      const gateway = `198.18.${c}.${4 * i + 1}`;
      const address = `198.18.${c}.${4 * i + 2}`;
      ip(['netns', 'add', netns]);
      ip(['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside]);
      ip(['link', 'set', inside, 'netns', netns]);
      ip(['addr', 'add', `${gateway}/30`, 'dev', outside]);
      ip(['link', 'set', outside, 'up']);
      ip(['-n', netns, 'addr', 'add', `${address}/30`, 'dev', inside]);
      ip(['-n', netns, 'link', 'set', inside, 'up']);
      ip(['-n', netns, 'link', 'set', 'lo', 'up']);
      return {
        netns,
        gateway,
        address,
        spawn: (command, args, options = {}) => spawn('ip', ['netns', 'exec', netns, command, ...args], options),
        cut: () => void ip(['link', 'set', outside, 'down']),
        heal: () => void ip(['link', 'set', outside, 'up']),
      };
    });
    return { hosts, subnet: `198.18.${c}.0/24`, remove: removeAtExit };
  } catch (error) {
    removeAtExit();
    throw error;
  }
}

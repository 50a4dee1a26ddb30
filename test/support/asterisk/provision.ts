import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from '../repo.js';
import { asteriskRoot, provisionScript } from './paths.js';

/**
 * Whether the Asterisk root can be had here, decided cheaply at collection
 * time (e2eSuite() in ../suite.ts skips or fails on it), and the provisioning
 * itself (slow the first time) for beforeAll.
 */

const STAMP = '.vnum-provisioned';

function cachedRootIsCurrent(): boolean {
  const stampFile = path.join(asteriskRoot, STAMP);
  if (!existsSync(stampFile)) return false;
  const script = path.join(repoRoot, 'docker/asterisk/install-asterisk.sh');
  const hash = spawnSync('sha256sum', [script], { encoding: 'utf8' }).stdout.split(' ')[0];
  return readFileSync(stampFile, 'utf8').trim() === `install-asterisk.sh sha256 ${hash}`;
}

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function mirrorReachable(): string | null {
  let mirror = process.env.VNUM_DEBIAN_MIRROR;
  if (!mirror) {
    const sources = '/etc/apt/sources.list.d/debian.sources';
    if (!existsSync(sources)) return `no ${sources} to find a Debian mirror in`;
    mirror = /^URIs:\s*(\S+)/m.exec(readFileSync(sources, 'utf8'))?.[1];
    if (!mirror) return `no URIs: line in ${sources}`;
  }
  // apt-helper needs a real file to download into (not /dev/null).
  const dir = mkdtempSync(path.join(tmpdir(), 'vnum-mirror-probe-'));
  try {
    const probe = spawnSync(
      'timeout',
      ['20', '/usr/lib/apt/apt-helper', '-o', 'Acquire::http::Timeout=8', 'download-file',
        `${mirror.replace(/\/$/, '')}/dists/sid/Release`, path.join(dir, 'Release')],
      { stdio: 'ignore' },
    );
    return probe.status === 0 ? null : `the Debian mirror ${mirror} is unreachable`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let blocker: string | null | undefined;

/** null when the root can be used or built here; else the one-line reason it cannot (not root, no Debian mirror). */
export function asteriskBlocker(): string | null {
  blocker ??= ((): string | null => {
    if (process.platform !== 'linux') return 'Asterisk runs in a Linux chroot; this is not Linux';
    if (process.getuid?.() !== 0) return 'not running as root (chroot, mount and debootstrap need root)';
    if (cachedRootIsCurrent() && onPath('sipp')) return null;
    return mirrorReachable();
  })();
  return blocker;
}

/**
 * Builds or reuses the Asterisk root; rejects with provision.sh's own message.
 * In a mount namespace of its own: the /proc it and debootstrap mount in the
 * root being built go with them, however they end.
 */
export async function provision(): Promise<void> {
  const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'bash', provisionScript], {
    env: { ...process.env, VNUM_ASTERISK_ROOT: asteriskRoot },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGTERM'), 15 * 60_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once('close', (c, s) => resolve([c, s])),
  );
  clearTimeout(timer);
  if (code !== 0) throw new Error(`provision.sh failed (${code ?? signal}):\n${stderr.slice(-4000)}`);
}

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The machine's one lock for the fixed ports (paths.ts): every e2e run, the
 * Asterisk benchmark and anything else that binds them take turns through it.
 * A directory (mkdir is atomic) holding its owner's pid, at a fixed path so
 * that runs with different TMPDIRs still meet; an owner that is gone is taken
 * over.
 */
export const PORTS_LOCK = '/tmp/vnum-e2e-asterisk.lock';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock, waiting for another live owner to give it back; resolves with how to give it back. */
export async function takePortsLock(timeoutMs = 540_000): Promise<() => void> {
  const dir = PORTS_LOCK;
  const pidFile = path.join(dir, 'pid');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(pidFile, String(process.pid));
      return () => {
        try {
          if (readFileSync(pidFile, 'utf8') === String(process.pid)) rmSync(dir, { recursive: true, force: true });
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let owner = NaN;
    try {
      owner = Number(readFileSync(pidFile, 'utf8'));
    } catch {
      // between the owner's mkdir and its pid write: look again shortly
    }
    // Its owner is gone (or was an earlier process with our pid): take it over.
    if (Number.isInteger(owner) && owner > 0 && (owner === process.pid || !pidAlive(owner))) {
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${dir} held by pid ${owner} for over ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** How to give the lock back; a process keeps it from its first Asterisk until it exits. */
let held: (() => void) | null = null;

export async function holdPortsLock(): Promise<void> {
  held ??= await takePortsLock();
}

export function releasePortsLock(): void {
  held?.();
  held = null;
}

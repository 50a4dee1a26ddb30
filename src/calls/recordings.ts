import { statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import { recordDeleted, recordingsToDelete, recordingsToMeasure, recordMeasured } from './store.js';

/**
 * Recordings on disk, as `vnum serve` keeps them. Asterisk's MixMonitor
 * writes `<folder>/<Uniqueid>.wav` (dialplan/vnum.conf) once both parties
 * have answered; the call log holds the path from the moment the router
 * bridged the call. Once the call is over, its file is measured (none: the
 * call was never answered, and the path is cleared); once it is older than
 * the retention period, the file is deleted and the deletion logged.
 */
export interface RecordingSettings {
  /** The folder as vnum sees it (the same folder Asterisk writes to). */
  dir: string;
  retentionMs: number;
}

/** MixMonitor closes the file on a thread of its own after the hang-up: measure a moment later. */
export const SETTLE_MS = 1_500;

/** Where a call's recording goes: named by the caller channel's Uniqueid, never by a number. */
export function recordingPath(settings: RecordingSettings, uniqueid: string): string {
  return path.join(settings.dir, `${uniqueid}.wav`);
}

function sizeOf(file: string): number | null {
  try {
    return statSync(file).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** One pass: measure the recordings of calls just over, delete those past retention. */
export function sweepRecordings(db: Db, settings: RecordingSettings, now: number, log: Logger): void {
  for (const row of recordingsToMeasure(db, now - SETTLE_MS)) {
    recordMeasured(db, row.id, sizeOf(row.path));
  }
  for (const row of recordingsToDelete(db, now - settings.retentionMs)) {
    let existed = true;
    try {
      unlinkSync(row.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        log.error({ call: row.id, session: row.session, file: path.basename(row.path), err: (error as Error).message }, 'recording could not be deleted: will try again');
        continue;
      }
      existed = false;
    }
    recordDeleted(db, row.id, now);
    log.info({ call: row.id, session: row.session, file: path.basename(row.path), existed }, 'recording deleted: retention period over');
  }
}

/**
 * `pool sync`: make the pool follow a provider's export, unattended (a
 * nightly timer), without ever undoing the operator and without letting a
 * bad export empty the pool. The state of each number follows the one rule
 * shared with `pool import` (importedState, src/pool/plan.ts); what is new
 * here is what becomes of numbers the export no longer lists, and the limit
 * on how many of them one sync may retire.
 *
 * The HTTP API's POST /v1/pool/sync is the same call: the export's entries
 * (readExport) and SyncOptions in, the SyncSummary out, as `--json` prints it.
 */
import type { Db } from '../store/db.js';
import { writeTransaction } from '../store/db.js';
import { ErrorCode, VnumError } from '../errors.js';
import type { E164 } from '../numbers/normalise.js';
import { planPoolChange, type HeldNumber, type PoolPlan } from './plan.js';
import { applyPoolPlan, heldNumbers, refuseParties, validateEntries, type KeptState, type PoolEntryInput, type PoolState } from './pool.js';

/**
 * The default share of the available numbers one sync may retire. A carrier
 * takes numbers back a few at a time (cancelled, ported away); an export
 * that drops more than a tenth of them in one night is far more likely cut
 * short, filtered or another account's. One number a night is always
 * allowed (else a pool under ten numbers could never follow its carrier
 * unattended), and the last available one never is. The operator looks
 * (`--dry-run`) and says so (`--max-retire 100%`).
 */
export const DEFAULT_MAX_RETIRE_PERCENT = 10;

/** `10%` -> 10: a whole percentage from 0% to 100%. */
export function parseRetireShare(text: string, what = '--max-retire'): number {
  const match = /^(\d{1,3})%$/.exec(text.trim());
  if (!match || Number(match[1]) > 100) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid ${what} "${text.slice(0, 40)}": a whole percentage from 0% to 100%, e.g. 10%`);
  }
  return Number(match[1]);
}

export interface SyncOptions {
  /** Retire the available numbers the export no longer lists (else they are only reported). */
  retireMissing: boolean;
  /** The most of the available numbers one sync may retire, in percent (0 to 100). */
  maxRetirePercent: number;
  /** Plan and report only: nothing is written, and a plan over the limit is reported, not refused. */
  dryRun: boolean;
  defaultCountry?: string | undefined;
  now: number;
}

export interface SyncChange {
  number: E164;
  /** null: added. */
  from: { country: string; state: PoolState } | null;
  to: { country: string; state: PoolState };
  why: string;
}

/** The summary `pool sync --json` prints and POST /v1/pool/sync answers. */
export interface SyncSummary {
  dryRun: boolean;
  /** Distinct numbers in the export. */
  listed: number;
  added: number;
  /** Numbers put out of service (available before). */
  retired: number;
  /** Every other change: another state (reserved, back in service), another country. */
  updated: number;
  unchanged: number;
  /** Every number written, in number order, with why. */
  changes: SyncChange[];
  /** Numbers whose state the rule kept although the export asked otherwise or no longer lists them, and why. */
  kept: KeptState[];
  /** Without --retire-missing: numbers in service the export does not list, left as they are. */
  unlisted: Array<{ number: E164; state: PoolState }>;
  retireLimit: RetireLimit;
}

export interface RetireLimit {
  maxPercent: number;
  /** Available numbers before the sync: what the limit is a share of. */
  available: number;
  /** Available numbers this sync retires. */
  retiring: number;
  /** The most it may retire: maxPercent of `available`, rounded down, but at least one (none at 0%). */
  allowed: number;
  /** Available numbers after it: a sync under 100% never leaves none. */
  availableAfter: number;
  exceeded: boolean;
}

/**
 * Sessions are lent available numbers only (reserved ones on request,
 * retired ones never), so the limit is a share of those: the capacity a bad
 * export could take away.
 */
export function retireLimit(plan: PoolPlan, held: ReadonlyMap<string, HeldNumber>, maxPercent: number): RetireLimit {
  let available = 0;
  for (const number of held.values()) if (number.state === 'available') available++;
  let retiring = 0;
  let availableAfter = available;
  for (const change of plan.changes) {
    const was = change.from?.state === 'available';
    const is = change.to.state === 'available';
    if (was && change.to.state === 'retired') retiring++;
    availableAfter += (is ? 1 : 0) - (was ? 1 : 0);
  }
  if (maxPercent >= 100) return { maxPercent, available, retiring, allowed: available, availableAfter, exceeded: false };
  const allowed = Math.max(maxPercent > 0 ? 1 : 0, Math.floor((maxPercent * available) / 100));
  return { maxPercent, available, retiring, allowed, availableAfter, exceeded: retiring > allowed || (retiring > 0 && availableAfter === 0) };
}

export function syncSummary(plan: PoolPlan, limit: RetireLimit, dryRun: boolean): SyncSummary {
  let added = 0;
  let retired = 0;
  for (const change of plan.changes) {
    if (change.from === null) added++;
    else if (change.to.state === 'retired' && change.from.state !== 'retired') retired++;
  }
  return {
    dryRun,
    listed: plan.listed,
    added,
    retired,
    updated: plan.changes.length - added - retired,
    unchanged: plan.unchanged,
    changes: plan.changes.map(({ number, from, to, why }) => ({ number, from, to, why })),
    kept: plan.kept,
    unlisted: plan.unlisted,
    retireLimit: limit,
  };
}

export function percent(part: number, whole: number): string {
  return whole === 0 ? '0%' : `${Math.round((part * 1000) / whole) / 10}%`;
}

/** VNUM_RETIRE_LIMIT for a summary whose plan retires too much; the summary rides in its details. */
export function retireLimitError(summary: SyncSummary): VnumError {
  const limit = summary.retireLimit;
  const share = `${limit.retiring} of the ${limit.available} available numbers (${percent(limit.retiring, limit.available)})`;
  const what =
    limit.retiring > limit.allowed
      ? `the export would retire ${share}, more than the ${limit.allowed} a sync may retire (--max-retire ${limit.maxPercent}%)`
      : `the export would retire ${share} and leave none available`;
  const next = summary.dryRun
    ? 'a sync would write nothing. If the provider really dropped them, sync with --max-retire 100%'
    : "nothing was written. A download cut short, a filtered export, another account's? See the plan with --dry-run; if the provider really dropped them, sync again with --max-retire 100%";
  return new VnumError(ErrorCode.RetireLimit, `${what}: ${next}`, { summary });
}

/**
 * Sync the pool with a provider's export: every entry checked first, then
 * the plan made and (unless a dry run) written in one IMMEDIATE transaction,
 * against the pool as it is inside it. All or nothing: an invalid entry, a
 * party's real number in the export, or a plan over the retire limit writes
 * nothing (VNUM_RETIRE_LIMIT, with the summary in its details).
 */
export function syncPool(db: Db, entries: PoolEntryInput[], options: SyncOptions): SyncSummary {
  if (entries.length === 0) throw new VnumError(ErrorCode.InvalidExport, 'the export lists no numbers: a sync never empties the pool');
  const valid = validateEntries(entries, options.defaultCountry);
  const run = (): SyncSummary => {
    refuseParties(db, valid);
    const held = heldNumbers(db);
    const plan = planPoolChange(held, valid, { writer: 'sync', unlisted: options.retireMissing ? 'retire' : 'keep' });
    const limit = retireLimit(plan, held, options.maxRetirePercent);
    const summary = syncSummary(plan, limit, options.dryRun);
    if (options.dryRun) return summary;
    if (limit.exceeded) throw retireLimitError(summary);
    applyPoolPlan(db, plan, options.now);
    return summary;
  };
  // A dry run reads one consistent snapshot and takes no write lock (it works on a read-only database too).
  return options.dryRun ? db.transaction(run).deferred() : writeTransaction(db, run);
}

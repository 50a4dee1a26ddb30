import { isoDateTime } from '../time.js';
import { STATUS_FRESH_MS, type RouterStatus } from './store.js';

/**
 * Is this installation routing and logging calls? What `vnum health` prints
 * and GET /v1/health answers, from three facts gathered where each can be
 * known: the router's answer to a FastAGI health probe, the database, and
 * what that router last reported in the database (it writes its AMI state
 * every 5 s). A serve without AMI reports "disabled": healthy unless AMI is
 * required.
 */
export interface HealthReport {
  healthy: boolean;
  router: { ok: boolean; address: string; error: string | null };
  database: { ok: boolean; path: string; schemaVersion: number | null; error: string | null };
  ami: { ok: boolean; state: string; since: string | null; reportedAt: string | null; error: string | null };
  asterisk: { version: string | null };
}

const iso = (ms: number | null): string | null => (ms === null ? null : isoDateTime(ms));

function amiCheck(status: RouterStatus | undefined, router: string, now: number, requireAmi: boolean): HealthReport['ami'] {
  if (!status) {
    return { ok: false, state: 'unknown', since: null, reportedAt: null, error: `no vnum serve on ${router} has reported to this database` };
  }
  const base = { state: status.amiState, since: iso(status.amiSince), reportedAt: iso(status.updatedAt) };
  if (status.amiState === 'stopped') return { ok: false, ...base, error: `vnum serve stopped at ${iso(status.updatedAt)}` };
  if (now - status.updatedAt > STATUS_FRESH_MS) {
    return { ok: false, ...base, error: `last report ${Math.round((now - status.updatedAt) / 1000)} s ago: vnum serve is gone or stuck` };
  }
  if (status.amiState === 'disabled') {
    return { ok: !requireAmi, ...base, error: requireAmi ? 'AMI is not configured in vnum serve (VNUM_AMI_USER)' : null };
  }
  if (status.amiState !== 'logged-in') return { ok: false, ...base, error: status.amiError ?? `AMI ${status.amiState}` };
  return { ok: true, ...base, error: null };
}

export function healthReport(facts: {
  /** The probe's outcome. */
  router: { ok: true } | { ok: false; error: string };
  /** The router's key in router_status (host:port). */
  address: string;
  database: HealthReport['database'];
  /** What that router last reported, read from the database (undefined: nothing, or the database unreadable). */
  status: RouterStatus | undefined;
  now: number;
  requireAmi: boolean;
}): HealthReport {
  const { router, address, database, status, now, requireAmi } = facts;
  const ami = database.ok
    ? amiCheck(status, address, now, requireAmi)
    : { ok: false, state: 'unknown', since: null, reportedAt: null, error: 'database unreadable' };
  return {
    healthy: router.ok && database.ok && ami.ok,
    router: { ok: router.ok, address, error: router.ok ? null : router.error },
    database,
    ami,
    asterisk: { version: status && status.amiState === 'logged-in' ? status.asteriskVersion : null },
  };
}

/** One router as GET /v1/health shows it: judged from its own report alone. */
export interface RouterHealth {
  address: string;
  ok: boolean;
  ami: HealthReport['ami'];
  asterisk: { version: string | null };
}

/** How long a router's report stays listed (a router moved to another address leaves its old row behind). */
export const ROUTER_REPORTS_KEPT_MS = 7 * 86_400_000;

/**
 * The installation as the HTTP API sees it: it may run on another host than
 * the routers, so each router is judged by what it reports to the database
 * (fresh, AMI logged in), not by a FastAGI probe. Healthy: the database
 * answers, some router is ok, and every router that was not stopped on
 * purpose is ok.
 */
export function installationHealth(facts: {
  database: HealthReport['database'];
  routers: RouterStatus[];
  now: number;
  requireAmi: boolean;
}): { healthy: boolean; database: HealthReport['database']; routers: RouterHealth[] } {
  const routers = facts.routers.map((status): RouterHealth => {
    const ami = amiCheck(status, status.router, facts.now, facts.requireAmi);
    return { address: status.router, ok: ami.ok, ami, asterisk: { version: status.amiState === 'logged-in' ? status.asteriskVersion : null } };
  });
  const healthy = facts.database.ok && routers.some((r) => r.ok) && routers.every((r) => r.ok || r.ami.state === 'stopped');
  return { healthy, database: facts.database, routers };
}

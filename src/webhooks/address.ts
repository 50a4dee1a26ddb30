import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { ErrorCode, VnumError } from '../errors.js';

/**
 * Where webhooks may go. The receiver is the order system, normally on
 * another host (private addresses are fine: 10/8, 192.168/16, fd00::/8).
 * Unless the operator allows it (VNUM_WEBHOOK_ALLOW_LOCAL=on), vnum refuses
 * to send to its own host or what stands for it: loopback, this host's own
 * interface addresses, the unspecified address, link-local (cloud metadata
 * services live at 169.254.169.254), multicast and broadcast; IPv4-mapped
 * IPv6 forms of these too. Checked when the deliverer starts and again for
 * every connection, on the addresses the name resolves to then, so a DNS
 * answer that changes to 127.0.0.1 later is refused too.
 */

/** What stands for this host, or for no host in particular, by name. */
const REFUSED: ReadonlyArray<[string, BlockList]> = (
  [
    ['loopback', [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']]],
    ['unspecified', [['0.0.0.0', 8, 'ipv4'], ['::', 128, 'ipv6']]],
    ['link-local', [['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6']]],
    ['multicast or broadcast', [['224.0.0.0', 4, 'ipv4'], ['255.255.255.255', 32, 'ipv4'], ['ff00::', 8, 'ipv6']]],
  ] as const
).map(([name, subnets]) => {
  const list = new BlockList();
  for (const [net, prefix, type] of subnets) list.addSubnet(net, prefix, type);
  return [name, list];
});

function family(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 6 ? 'ipv6' : 'ipv4';
}

/** Why vnum will not send to this address, or undefined when it may. */
export function refusedAddress(address: string, allowLocal: boolean): string | undefined {
  if (allowLocal || isIP(address) === 0) return undefined;
  for (const [name, list] of REFUSED) if (list.check(address, family(address))) return `${address} is ${name}`;
  const own = new BlockList();
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) own.addAddress(entry.address.replace(/%.*$/, ''), entry.family === 'IPv6' ? 'ipv6' : 'ipv4');
  }
  if (own.check(address, family(address))) return `${address} is an address of this host`;
  return undefined;
}

/** The receiver's address is one vnum refuses: the operator's setting (the URL, or what its name resolves to now). */
export function refusedAddressError(message: string): VnumError {
  return new VnumError(ErrorCode.Configuration, `${message}: refused (VNUM_WEBHOOK_ALLOW_LOCAL=on allows it)`);
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for http.request: the name resolved as usual, refused when any
 * address it resolves to is refused (a name that resolves to both a public
 * address and 127.0.0.1 is not a receiver on another host).
 */
export function guardedLookup(allowLocal: boolean) {
  return (hostname: string, options: { all?: boolean; family?: number }, callback: LookupCallback): void => {
    dnsLookup(hostname, { all: true, family: options.family ?? 0 }, (error, addresses) => {
      if (error) return callback(error, []);
      for (const { address } of addresses) {
        const why = refusedAddress(address, allowLocal);
        if (why) return callback(refusedAddressError(`${hostname} resolves to ${why}`), []);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0]!;
      callback(null, first.address, first.family);
    });
  };
}

/** Every address a host name resolves to now (an IP literal: itself). */
export async function resolveAll(host: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  return new Promise((resolve, reject) => {
    dnsLookup(host, { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses.map((a) => a.address))));
  });
}

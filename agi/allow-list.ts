import { BlockList, SocketAddress, isIPv4, isIPv6 } from 'node:net';

/**
 * Which peer addresses may speak FastAGI to us. FastAGI has no authentication:
 * anyone who reaches the port can send a forged `agi_extension` and read back
 * a real number, so the source address is the only gate.
 *
 * Entries are addresses (`127.0.0.1`, `::1`) or CIDR subnets (`10.0.0.0/8`,
 * `fd00::/8`). An IPv4-mapped IPv6 peer (`::ffff:127.0.0.1`, what a dual-stack
 * listener reports) is judged as the IPv4 address it carries.
 */
export const DEFAULT_ALLOW: readonly string[] = Object.freeze(['127.0.0.1', '::1']);

const MAPPED_PREFIX = '::ffff:';
const PREFIX_LENGTH = /^\d{1,3}$/;

/** `::ffff:a.b.c.d` -> `a.b.c.d`; anything else unchanged. */
export function unmapIPv4(address: string): string {
  if (address.length > MAPPED_PREFIX.length && address.slice(0, MAPPED_PREFIX.length).toLowerCase() === MAPPED_PREFIX) {
    const v4 = address.slice(MAPPED_PREFIX.length);
    if (isIPv4(v4)) return v4;
  }
  return address;
}

function canonical(address: string): string | undefined {
  const plain = unmapIPv4(address.trim());
  if (isIPv4(plain)) return plain;
  if (isIPv6(plain)) return new SocketAddress({ address: plain, family: 'ipv6' }).address;
  return undefined;
}

export class AllowList {
  /** Exact addresses in the form Node reports peers in: one Set lookup per connection. */
  private readonly exact = new Set<string>();
  private readonly subnets = new BlockList();
  private hasSubnets = false;
  readonly entries: readonly string[];

  /**
   * Throws on an entry that is neither an address nor a CIDR subnet (a typo
   * must not open the port), on an empty list (it would refuse every call,
   * Asterisk included), and on entries that can never be one peer or that
   * admit every address there is (`0.0.0.0`, `::`, `0.0.0.0/0`, `::/0`).
   */
  constructor(entries: readonly string[]) {
    this.entries = Object.freeze([...entries]);
    if (entries.length === 0) throw new Error('the allow-list is empty: it would refuse every connection, Asterisk\'s included');
    for (const entry of entries) {
      const slash = entry.indexOf('/');
      if (slash < 0) {
        const address = canonical(entry);
        if (address === undefined) throw new Error(`allow-list entry is not an IP address: "${entry}"`);
        if (address === '0.0.0.0' || address === '::') {
          throw new Error(`allow-list entry "${entry}" is the unspecified address: no peer ever has it`);
        }
        this.exact.add(address);
        continue;
      }
      const network = canonical(entry.slice(0, slash));
      const prefixText = entry.slice(slash + 1);
      const prefix = PREFIX_LENGTH.test(prefixText) ? Number(prefixText) : NaN;
      const family = network !== undefined && isIPv4(network) ? 'ipv4' : 'ipv6';
      if (network === undefined || !(prefix >= 0 && prefix <= (family === 'ipv4' ? 32 : 128))) {
        throw new Error(`allow-list entry is not a CIDR subnet: "${entry}"`);
      }
      if (prefix === 0) {
        throw new Error(`allow-list entry "${entry}" admits every address: FastAGI has no authentication, list your Asterisk`);
      }
      this.subnets.addSubnet(network, prefix, family);
      this.hasSubnets = true;
    }
  }

  allows(remoteAddress: string | undefined): boolean {
    if (remoteAddress === undefined) return false; // already gone: nothing to serve
    const address = unmapIPv4(remoteAddress);
    if (this.exact.has(address)) return true;
    if (!this.hasSubnets) return false;
    if (isIPv4(address)) return this.subnets.check(address, 'ipv4');
    return isIPv6(address) && this.subnets.check(address, 'ipv6');
  }
}

/**
 * Where `pool sync` reads a provider's export from: an https:// URL (see
 * fetch.ts) or a file, either way bounded by the same size limit before a
 * byte is parsed.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { ErrorCode, VnumError } from '../errors.js';
import { fetchExport, shownUrl, type FetchPolicy } from './fetch.js';

export interface ExportBytes {
  bytes: Buffer;
  /** The Content-Type a server declared. */
  contentType?: string | undefined;
  /** The file's name, when it came from a file. */
  fileName?: string | undefined;
  /** The source as messages show it (a URL without its query). */
  shown: string;
}

/** A source with a scheme (`https://…`, `ftp://…`) is a URL; anything else a file path. */
export function isUrl(source: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(source);
}

export function parseSourceUrl(source: string): URL {
  try {
    return new URL(source);
  } catch {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid URL "${source.slice(0, 200)}"`);
  }
}

export async function readExportBytes(source: string, policy: FetchPolicy): Promise<ExportBytes> {
  if (!isUrl(source)) return { bytes: readExportFile(source, policy.maxBytes), fileName: source, shown: source };
  const fetched = await fetchExport(parseSourceUrl(source), policy);
  return { bytes: fetched.body, contentType: fetched.contentType, shown: shownUrl(fetched.url) };
}

/** A file's bytes, refused past `maxBytes` (`limit` names it), also for a FIFO or a device, which announce no size. */
export function readExportFile(file: string, maxBytes: number, limit = '--max-size'): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOCTTY);
  } catch (e) {
    throw new VnumError(ErrorCode.InvalidArgument, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new VnumError(ErrorCode.InvalidArgument, `cannot read ${file}: it is a directory`);
    if (stat.isFile() && stat.size > maxBytes) {
      throw new VnumError(ErrorCode.InvalidExport, `${file} holds ${stat.size} bytes, more than ${limit} (${maxBytes} bytes): refused`);
    }
    // To the end of the file, not to the size fstat gave: it may have grown since.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(64 * 1024);
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      length += n;
      if (length > maxBytes) throw new VnumError(ErrorCode.InvalidExport, `${file} holds more than ${limit} (${maxBytes} bytes): refused`);
      chunks.push(chunk.subarray(0, n));
    }
    return Buffer.concat(chunks, length);
  } finally {
    closeSync(fd);
  }
}

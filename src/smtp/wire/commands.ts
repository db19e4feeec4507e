// Parsing of the client's command lines that carry arguments: MAIL FROM / RCPT TO with their ESMTP
// parameters (RFC 5321 4.1.2, RFC 1870, 6152, 6531), and the EHLO/HELO name. The rules are
// smtp-server's (the library this replaced), so clients see the same verdicts: an address in angle
// brackets, a source route ignored, exactly one "@", no control or invisible characters, parameters
// xtext-decoded and refused when they carry control characters or come twice. One difference: the
// address is relayed as the client wrote it (smtp-server turned an xn-- domain into Unicode, which
// the upstream then had to accept without SMTPUTF8).
import net from 'node:net';

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\x00-\x1F\x7F-\x9F]/;
/** control characters and invisible formatting characters: never in an address (spoofing, injection) */
// eslint-disable-next-line no-control-regex
const ADDRESS_UNSAFE = /[\x00-\x1F\x7F-\x9F\u200B\u2060\uFEFF]/;
const SOURCE_ROUTE = /^@[^\s,:@]+(?:,@[^\s,:@]+)*:/;
const DOMAIN_CHARS = /^[a-zA-Z0-9\u0080-\uFFFF.-]+$/;
const MAX_HELO_NAME = 300;

export type Params = Record<string, string | true>;

export interface AddressCommand {
  address: string;
  params: Params;
}

/** Why a MAIL/RCPT line was refused, as the 501 text says it. */
export type AddressCommandError = { error: 'syntax' } | { error: 'duplicate'; param: string };

function xtextDecode(v: string): string {
  return v.indexOf('+') < 0
    ? v
    : v.replace(/\+([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The address in a path's angle brackets is acceptable (postmaster allowed for RCPT). */
function validAddress(address: string, rcpt: boolean): boolean {
  if (!address) return true; // the null sender; RCPT refuses it itself
  if (ADDRESS_UNSAFE.test(address)) return false;
  if (rcpt && address.toLowerCase() === 'postmaster') return true;
  const at = address.indexOf('@');
  if (at <= 0 || at !== address.lastIndexOf('@') || at === address.length - 1) return false;
  if (address.length > 253) return false; // RFC 5321 4.5.3.1.3: the path, less "<", ">"
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return false;
  if (domain.startsWith('[') && domain.endsWith(']')) {
    const ip = domain.slice(1, -1);
    return /^ipv6:/i.test(ip) ? net.isIPv6(ip.slice(5)) : net.isIPv4(ip);
  }
  return !(
    domain.startsWith('.') ||
    domain.endsWith('.') ||
    domain.includes('..') ||
    domain.includes('.-') ||
    domain.includes('-.') ||
    !DOMAIN_CHARS.test(domain)
  );
}

/**
 * Parse `line` as `MAIL FROM:<addr> params` (rcpt false) or `RCPT TO:<addr> params` (rcpt true).
 */
export function parseAddressCommand(line: string, rcpt: boolean): AddressCommand | AddressCommandError {
  const colon = line.indexOf(':');
  if (colon < 0) return { error: 'syntax' };
  const verb = line.slice(0, colon).trim().toUpperCase();
  if (verb !== (rcpt ? 'RCPT TO' : 'MAIL FROM')) return { error: 'syntax' };
  const words = line
    .slice(colon + 1)
    .trim()
    .split(/\s+/);
  let address = words[0] ?? '';
  if (address.length < 2 || address[0] !== '<' || address[address.length - 1] !== '>')
    return { error: 'syntax' };
  address = address.slice(1, -1);
  if (address.includes('<') || address.includes('>')) return { error: 'syntax' };
  address = address.replace(SOURCE_ROUTE, '');
  const params: Params = {};
  let duplicate: string | undefined;
  for (let i = 1; i < words.length; i++) {
    const w = words[i]!;
    const eq = w.indexOf('=');
    const key = (eq < 0 ? w : w.slice(0, eq)).toUpperCase();
    if (!key.trim()) continue;
    let value: string | true = eq < 0 ? true : w.slice(eq + 1) || true;
    if (typeof value === 'string') {
      value = xtextDecode(value);
      if (CONTROL_CHARS.test(value)) return { error: 'syntax' };
    }
    if (key in params) duplicate ??= key;
    params[key] = value;
  }
  if (!validAddress(address, rcpt)) return { error: 'syntax' };
  if (duplicate) return { error: 'duplicate', param: duplicate };
  return { address, params };
}

/** The name a client gives in EHLO/HELO: anything printable of sane length (smtp-server's rule). */
export function acceptableHeloName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_HELO_NAME && !CONTROL_CHARS.test(name);
}

const VALUE_PARAMS = { mail: ['BODY', 'SIZE', 'RET', 'ENVID'], rcpt: ['NOTIFY', 'ORCPT'] } as const;

/** A MAIL FROM (or RCPT TO) parameter that needs a value and has none (RFC 1870, 6152, 3461). */
export function valuelessParam(params: Params, rcpt = false): string | undefined {
  for (const k of VALUE_PARAMS[rcpt ? 'rcpt' : 'mail']) if (params[k] === true) return k;
  return undefined;
}

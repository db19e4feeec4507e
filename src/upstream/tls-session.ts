// A TLS session kept for resumption, without the server's certificate in it.
//
// Node takes a session to resume only as OpenSSL's DER (`session:` of tls.connect) and parses it at
// every connect, twice in Node 20. Almost all of that is decoding the public key of the certificate
// stored in it, through OpenSSL 3.0's slow decoders: 0.6-0.9 ms of a 2.8-3.1 ms setup, in one
// synchronous block that holds the event loop (docs/performance.md, "A session without the
// certificate"). A resumed handshake never needs that copy: the server proves itself with the
// resumption secret that only the server we verified holds (RFC 8446 2.2), Node skips the identity
// check on a resumed session, and `getPeerCertificate()` is empty on one either way. A server that
// does not resume runs a full handshake, which verifies the certificate it sends.
//
// TLS 1.3 sessions only: Node accepts a resumed connection without a peer certificate only when it
// is TLS 1.3 (its VerifyPeerCertificate); a TLS 1.2 one would fail with UNABLE_TO_GET_ISSUER_CERT.
//
// SSL_SESSION_ASN1 (OpenSSL ssl/ssl_asn1.c) is a SEQUENCE of version, ssl_version, cipher, ... whose
// field `peer` is `[3] EXPLICIT X509 OPTIONAL`; dropping that element leaves a valid session.
// Anything not shaped as expected is returned unchanged: the cost comes back, the correctness does
// not change.

const SEQUENCE = 0x30;
/** ssl_version of a TLS 1.3 session: INTEGER 0x0304 */
const TLS13_VERSION = [0x02, 0x02, 0x03, 0x04];
/** context-specific, constructed, tag number 3 */
const PEER_CERTIFICATE = 0xa3;

interface Element {
  tag: number;
  /** offset of the element's first byte */
  start: number;
  /** offset just past its contents */
  end: number;
  /** offset of its contents */
  contents: number;
}

/** The DER element at `off` within `der`, or undefined if it does not fit. */
function elementAt(der: Uint8Array, off: number): Element | undefined {
  if (off + 2 > der.length) return undefined;
  const tag = der[off];
  if ((tag & 0x1f) === 0x1f) return undefined; // high tag numbers: not in a session
  let len = der[off + 1];
  let contents = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || contents + n > der.length) return undefined; // indefinite or absurd
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[contents + i];
    contents += n;
  }
  const end = contents + len;
  if (end > der.length) return undefined;
  return { tag, start: off, end, contents };
}

function isTls13(der: Buffer, el: Element): boolean {
  if (el.end - el.start !== TLS13_VERSION.length) return false;
  for (let i = 0; i < TLS13_VERSION.length; i++) if (der[el.start + i] !== TLS13_VERSION[i]) return false;
  return true;
}

function lengthBytes(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

/**
 * A TLS 1.3 session `der` without its peer certificate; `der` itself when it is another version,
 * has no certificate or is not a session's shape.
 */
export function withoutPeerCertificate(der: Buffer): Buffer {
  const outer = elementAt(der, 0);
  if (!outer || outer.tag !== SEQUENCE || outer.end !== der.length) return der;
  const kept: Buffer[] = [];
  let dropped = false;
  for (let off = outer.contents; off < outer.end;) {
    const el = elementAt(der, off);
    if (!el || el.end > outer.end) return der;
    if (kept.length === 1 && !isTls13(der, el)) return der;
    if (el.tag === PEER_CERTIFICATE) dropped = true;
    else kept.push(der.subarray(el.start, el.end));
    off = el.end;
  }
  if (!dropped) return der;
  const body = Buffer.concat(kept);
  return Buffer.concat([Buffer.from([SEQUENCE, ...lengthBytes(body.length)]), body]);
}

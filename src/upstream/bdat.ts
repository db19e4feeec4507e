// BDAT (CHUNKING, RFC 3030): the message goes as one chunk of exactly its octets, no dot-stuffing
// and no terminator. The octets are those DATA delivers (dot-stuff.ts): the message as the client
// sent it, plus a final CRLF when it lacks one, so switching between the two changes nothing the
// recipient sees.
import type { ChunkSink } from './dot-stuff.js';

const CRLF = Buffer.from('\r\n');

/** The chunk's size in octets and whether a CRLF must close it (as writeDotStuffed adds one). */
export function chunkOf(message: readonly Buffer[]): { size: number; addCrlf: boolean } {
  let size = 0;
  let prev2 = -1;
  let prev1 = -1;
  for (let c = 0; c < message.length; c++) {
    const chunk = message[c];
    const len = chunk.length;
    if (len === 0) continue;
    size += len;
    if (len >= 2) {
      prev2 = chunk[len - 2];
      prev1 = chunk[len - 1];
    } else {
      prev2 = prev1;
      prev1 = chunk[0];
    }
  }
  const addCrlf = size > 0 && !(prev2 === 0x0d && prev1 === 0x0a);
  return { size: addCrlf ? size + 2 : size, addCrlf };
}

/** `commands` (ending in `BDAT <size> LAST\r\n`), then the message's slices as they are, uncopied. */
export function writeChunk(
  out: ChunkSink,
  commands: string,
  message: readonly Buffer[],
  addCrlf: boolean,
): void {
  out.write(Buffer.from(commands)); // UTF-8: SMTPUTF8 addresses
  for (let c = 0; c < message.length; c++) if (message[c].length > 0) out.write(message[c]);
  if (addCrlf) out.write(CRLF);
}

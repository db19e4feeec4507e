// The bytes of one message held against the global in-flight byte budget (smtp.maxInflightBytes),
// from the start of DATA until the message's reply is known or it is abandoned. The relay hands it
// out (Relay.reserve) and is the only one that counts bytes (docs/design.md, principle 9); the
// listener adds what the client sends and releases it when it gives the message up.

/** How a reservation takes bytes from, and gives them back to, the budget. */
export interface ByteBudget {
  /** count `n` more bytes; false once the budget is exceeded */
  take(n: number): boolean;
  give(n: number): void;
}

/**
 * receiving: bytes are being added; refused: the budget said no, bytes still held until release;
 * sending: the relay owns the message until its reply; released: the bytes are back.
 */
export type ReservationState = 'receiving' | 'refused' | 'sending' | 'released';

export class Reservation {
  private state: ReservationState;
  private held = 0;
  private readonly chunks: Buffer[] = [];

  constructor(
    private readonly budget: ByteBudget,
    /** the budget is already spent at DATA start: the message is refused whatever its size */
    refusedAtStart: boolean,
  ) {
    this.state = refusedAtStart ? 'refused' : 'receiving';
  }

  /** true when the message must get `452 4.3.1` instead of being relayed */
  get refused(): boolean {
    return this.state === 'refused';
  }

  /** the message size so far */
  get bytes(): number {
    return this.held;
  }

  /** A chunk of the message as received; ignored once refused (no more bytes are held for it). */
  add(chunk: Buffer): void {
    if (this.state !== 'receiving') return;
    this.held += chunk.length;
    this.chunks.push(chunk);
    if (!this.budget.take(chunk.length)) this.state = 'refused';
  }

  /**
   * The message is given up (the client went away, or it was refused before the relay): the bytes
   * go back. Harmless when already released, and a no-op while the relay is sending it: the relay
   * releases it when the reply is known.
   */
  release(): void {
    if (this.state === 'sending' || this.state === 'released') return;
    this.giveBack();
  }

  /** For Relay.send: the message, now the relay's; undefined when it cannot be sent. */
  beginSend(): readonly Buffer[] | undefined {
    if (this.state !== 'receiving') return undefined;
    this.state = 'sending';
    return this.chunks;
  }

  /** For Relay.send: the reply is known. */
  endSend(): void {
    if (this.state === 'sending') this.giveBack();
  }

  private giveBack(): void {
    this.state = 'released';
    this.budget.give(this.held);
    this.chunks.length = 0;
  }
}

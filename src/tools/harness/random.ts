// Seeded randomness for the test tools (soak faults, fuzz cases): a run that found something can be
// replayed from its printed seed.

/** mulberry32: small, fast, good enough for picking cases reproducibly; returns [0, 1) */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

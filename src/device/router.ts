// The server's routing table: which client session owns a tunnel address.
//
// Every client has exactly one /32 (its pool address), so "longest prefix match" is
// always an exact match and a Map<number, S> keyed by the uint32 address is all we
// need: O(1) lookup with no string building per packet. A trie (or LPM table) only pays
// off when routes have different prefix lengths, e.g. a client announcing a LAN behind
// it; that is not supported here.

export class Router<S> {
  private readonly table = new Map<number, S>();

  /** Routes `addr` to `s`; returns the session that held it before, if any. */
  add(addr: number, s: S): S | undefined {
    const prev = this.table.get(addr);
    this.table.set(addr, s);
    return prev;
  }

  /**
   * Removes the route for `addr`. With `s` given, removes it only if it still points at
   * `s`, so an old session closing late cannot remove its successor's route.
   * Returns true when a route was removed.
   */
  remove(addr: number, s?: S): boolean {
    if (s !== undefined && this.table.get(addr) !== s) return false;
    return this.table.delete(addr);
  }

  lookup(addr: number): S | undefined {
    return this.table.get(addr);
  }

  get size(): number {
    return this.table.size;
  }

  entries(): IterableIterator<[number, S]> {
    return this.table.entries();
  }
}

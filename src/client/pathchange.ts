// When the client may open a new UDP socket for a changed path (roaming, client.ts newPath).
// Two kinds of evidence, two paces:
//   - certain: the socket's own local address is gone (a send failed, or the check once a
//     second found it missing). That socket can never work again, so waiting only delays the
//     move: a new one at once, GONE_GAP_MS apart at most (an address that flaps, a network
//     with no address or route yet, where each try fails).
//   - a suspicion: a probe went unanswered. The server may be slow or gone, and a new socket
//     each time would not help: at most once a second.

/** Between two tries on a suspicion. */
export const SUSPECT_GAP_MS = 1000;
/** Between two tries when the socket's own address is gone. */
export const GONE_GAP_MS = 100;

export class PathChanges {
  private triedAt = -Infinity;
  private failing = false;

  /** May a new socket be tried now? `gone`: the current socket's own address is gone. */
  may(now: number, gone: boolean): boolean {
    return now - this.triedAt >= (gone ? GONE_GAP_MS : SUSPECT_GAP_MS);
  }

  /**
   * A new socket was tried at `now`: opened, or it could not be made (no address or route
   * yet). Returns whether that is worth a log line: not a failure after a failure (retries
   * come ten a second).
   */
  tried(now: number, opened: boolean): boolean {
    this.triedAt = now;
    const news = opened || !this.failing;
    this.failing = !opened;
    return news;
  }
}

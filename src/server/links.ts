// The p2p topology's OS glue: a device of its own for each session (a point-to-point link),
// as jtunnel's server "opens a new tun device" per client. The kernel numbers the devices
// from the template (mvp%d -> mvp0, mvp1, ...), scripts/server-init.sh link-up gives each
// the server's address with the client's as the other end, and the program given after "--"
// (PROG ARGS...) runs when the link comes up and when it goes down. Closing the device's fd
// removes the interface, its addresses and routes (the kernel's doing, nothing to undo).
//
// link-up runs for many links at once: links that wait while a run is going on all go into
// the next one, so a thousand clients connecting together cost a few script runs.
//
// The server's event loop reads and writes a link's device (Link.dev) as it does the shared
// TUN; what kind of device a link is (a TUN here; a TAP for layer 2) is decided in `create`
// and by link-up, nowhere else.
import { logger } from '../log';
import { JobQueue, LinkInfo, linkEnv, ProgramResult, runInitScript, spawnProgram } from '../os/scripts';
import { Tun, TunReadShare } from '../tun/tun';
import type { PacketBatch } from '../batch';

const log = logger('link');
/** A link's program gets this long per run; then it is killed (and an "up" counts as failed). */
const PROGRAM_TIMEOUT_MS = 30_000;
/** Links one link-up run configures at most. */
const LINKS_PER_RUN = 256;

/** One session's device. */
export class Link {
  /** up: configured and announced (its program's "up" started); closed: the device is gone. */
  state: 'configuring' | 'up' | 'closed' = 'configuring';
  /** This link's script and program runs, one after another (a "down" never overtakes its "up"). */
  chain: Promise<unknown> = Promise.resolve();
  constructor(readonly dev: Tun, readonly info: LinkInfo) {}
  get name(): string { return this.dev.name; }
}

export interface LinksOptions {
  /** The interface name template, e.g. "mvp%d". */
  template: string;
  /** The read batch every link's device fills (the loop reads one device at a time). */
  share: TunReadShare;
  gro: boolean;
  mtu: number;
  /** The server's address on every link, IPv4 and IPv6 ('' for none). */
  local: string;
  local6: string;
  /** PROG ARGS... (empty: none). */
  program: string[];
  /** --dev tap: each link is a TAP, a port of `bridge` (no addresses of its own). */
  tap: boolean;
  bridge: string | null;
  /** Client to client (with a bridge: the clients' ports are isolated from each other without it). */
  clientToClient: boolean;
}

/** A link waiting for link-up, and what to tell its caller (null: done, else why not). */
interface Waiting { link: Link; done: (why: string | null) => void }

export class Links {
  /** The links' program runs, a few at a time. */
  private readonly jobs = new JobQueue(8);
  /** Links open now (status, shutdown). */
  readonly open = new Set<Link>();
  /** Program runs not yet done (shutdown waits for them). */
  private readonly running = new Set<Promise<unknown>>();
  /** Links waiting for the next link-up run, and whether one is going on. */
  private waiting: Waiting[] = [];
  private configuring = false;

  constructor(private readonly o: LinksOptions) {}

  /** The iptables wildcard for every link: the template's stem and "+" (mvp%d -> mvp+). */
  get wildcard(): string { return `${this.o.template.replace(/%d$/, '')}+`; }

  /**
   * Opens a device for a session; `onPackets` gets its read batches. Throws (EPERM, EBUSY ...,
   * see Tun.open) when the kernel refuses.
   */
  create(info: LinkInfo, onPackets: (b: PacketBatch, nowMs: number) => boolean): Link {
    const share = this.o.share;
    const dev = Tun.open({ name: this.o.template, share, gro: this.o.gro, tap: this.o.tap });
    const link = new Link(dev, info);
    dev.onPackets(onPackets);
    this.open.add(link);
    return link;
  }

  /** Configures the link (server-init.sh link-up, with the others waiting); rejects with the reason. */
  configure(link: Link): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ link, done: (why) => (why === null ? resolve() : reject(new Error(why))) });
      if (!this.configuring) void this.configureWaiting();
    });
  }

  /** link-up runs, each for all the links that waited for it, until none waits. */
  private async configureWaiting(): Promise<void> {
    this.configuring = true;
    try {
      await this.configureRuns();
    } finally {
      this.configuring = false;
    }
  }

  private async configureRuns(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, LINKS_PER_RUN);
      const live = batch.filter((w) => w.link.state !== 'closed');
      for (const w of batch) if (w.link.state === 'closed') w.done('closed before it was configured');
      if (live.length === 0) continue;
      const links = live.map((w) => `${w.link.name} ${w.link.info.peer}${this.o.local6 ? ` ${w.link.info.peer6}` : ''}`);
      let said: Map<string, string | null>;
      try {
        said = linkUpResults(await runInitScript('server-init.sh', 'link-up', {
          TOPOLOGY: 'p2p', LINKS: links.join('\n'), ADDR: this.o.local, ADDR6: this.o.local6, MTU: String(this.o.mtu),
          BRIDGE: this.o.bridge ?? '', CLIENT_TO_CLIENT: this.o.clientToClient ? '1' : '0',
        }));
      } catch (err) {
        for (const w of live) w.done((err as Error).message);
        continue;
      }
      for (const w of live) w.done(said.has(w.link.name) ? said.get(w.link.name)! : 'server-init.sh link-up said nothing of it');
    }
  }

  /** The link is up: its program's "up" run (ok without a program). */
  up(link: Link): Promise<ProgramResult> {
    link.state = 'up';
    return this.program(link, 'up');
  }

  /** The session ended: the device goes (and with it the interface); the program's "down" runs if "up" did. */
  close(link: Link): void {
    if (link.state === 'closed') return;
    const wasUp = link.state === 'up';
    link.state = 'closed';
    this.open.delete(link);
    link.dev.close();
    if (wasUp) void this.program(link, 'down');
  }

  private program(link: Link, event: 'up' | 'down'): Promise<ProgramResult> {
    const prog = this.o.program;
    if (prog.length === 0) return Promise.resolve({ ok: true, why: 'no program' });
    const env = linkEnv(event, link.name, link.info);
    return this.then(link, async () => {
      const r = await spawnProgram(prog, env, {
        timeoutMs: PROGRAM_TIMEOUT_MS,
        output: (line, stream) => (stream === 'stderr' ? log.warn : log.info)(`${link.name} ${event}: ${line}`, { cn: link.info.cn }),
      });
      if (!r.ok) log.warn(`link program failed on ${event}`, { dev: link.name, cn: link.info.cn, program: prog[0], reason: r.why });
      return r;
    });
  }

  /** Runs `job` after the link's earlier jobs, in the shared queue. */
  private then<T>(link: Link, job: () => Promise<T>): Promise<T> {
    const p = link.chain.then(() => this.jobs.run(job));
    const settled = link.chain = p.catch(() => undefined);
    this.running.add(settled);
    void settled.then(() => this.running.delete(settled));
    return p;
  }

  /** Waits until every program run (the links' "down" after a shutdown) is done, at most `ms`. */
  async idle(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => { timer = setTimeout(r, ms); });
    while (this.running.size > 0) {
      const done = await Promise.race([Promise.all([...this.running]).then(() => false), late.then(() => true)]);
      if (done) break;
    }
    clearTimeout(timer);
  }
}

/** What link-up said of each link: null for done, else why it failed. */
function linkUpResults(lines: string[]): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const l of lines) {
    const m = /^server-init: link-up (done|failed) for (\S+?)(?:: (.*))?$/.exec(l);
    if (m) out.set(m[2], m[1] === 'done' ? null : m[3] ?? 'failed');
  }
  return out;
}

/**
 * Frame ids seen recently per device, and the answers each got (a device that takes
 * compact answers gets one on `.../a`, dashboards the full result on `.../result`). A QoS 1 redelivery or
 * an agent's re-send of a frame already answered gets the same answer again (its first
 * answer may have gone to a session that no longer exists); one still in progress is
 * ignored, since its answer is coming. Bounded in time and in entries.
 */
export interface Answer {
  topic: string;
  payload: Buffer;
}

interface Entry {
  at: number;
  /** What was published for the frame, in order (absent: not answered yet). */
  answers?: Answer[];
  /** When this node gave the answer (absent: another node gave it). */
  answeredAt?: number;
}

export class AnswerCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
  ) {}

  /** The entry for a frame seen within the ttl, or undefined (and it is now marked seen). */
  seen(key: string, now: number): Entry | undefined {
    const e = this.entries.get(key);
    if (e && now - e.at < this.ttlMs) return e;
    this.entries.delete(key);
    this.entries.set(key, { at: now });
    this.evict(now);
    return undefined;
  }

  answer(key: string, answers: Answer[], now = Date.now()): void {
    const e = this.entries.get(key);
    if (!e) return;
    e.answers = answers;
    e.answeredAt = now;
  }

  /** The answers this node gave at `since` or later, oldest first (what to publish again
   * when the cluster's bus may have lost them). */
  givenSince(since: number): Answer[] {
    const out: { at: number; answers: Answer[] }[] = [];
    for (const e of this.entries.values())
      if (e.answers && e.answeredAt !== undefined && e.answeredAt >= since)
        out.push({ at: e.answeredAt, answers: e.answers });
    return out.sort((a, b) => a.at - b.at).flatMap((x) => x.answers);
  }

  /** An answer another node of a cluster gave: a redelivery of that frame here gets it
   * (each topic's first answer: the compact one and the full result may both come). */
  remember(key: string, answer: Answer, now: number): void {
    this.seen(key, now); // marks it seen unless it already is
    const e = this.entries.get(key);
    if (!e) return;
    e.answers ??= [];
    if (!e.answers.some((a) => a.topic === answer.topic)) e.answers.push(answer);
  }

  /** Forget a frame (it was refused and may be sent again for a real try). */
  forget(key: string): void {
    this.entries.delete(key);
  }

  private evict(now: number): void {
    // Insertion order is arrival order: expired and surplus entries are at the front.
    for (const [k, e] of this.entries) {
      if (now - e.at < this.ttlMs && this.entries.size <= this.maxEntries) break;
      this.entries.delete(k);
    }
  }
}

/** The cache key of a frame: one device of one fleet, one frame id. */
export function frameKey(fleet: string, deviceId: string, frameId: number): string {
  return `${fleet}/${deviceId}/${frameId}`;
}

/**
 * Which answers a node publishes again after its cluster's bus was lost: those it gave
 * from `beforeMs` before the loss was seen. A replay is itself a burst of publishes: when
 * one went out within that time before the next loss, it may have been lost too, so the
 * next replay also covers the answers that one covered (a flapping Redis loses nothing
 * twice over).
 */
export class ReplayWindow {
  private from: number | null = null;
  private last: { at: number; since: number } | null = null;

  constructor(private readonly beforeMs: number) {}

  /** The bus is back after a loss seen at `lostAt`: widen the next replay. */
  lost(lostAt: number): void {
    let from = lostAt - this.beforeMs;
    if (this.last && this.last.at >= from) from = Math.min(from, this.last.since);
    this.from = Math.min(this.from ?? from, from);
  }

  /** The replay goes out at `now`: the time from which its answers were given (null:
   * nothing to replay). */
  take(now: number): number | null {
    const since = this.from;
    if (since === null) return null;
    this.from = null;
    this.last = { at: now, since };
    return since;
  }
}

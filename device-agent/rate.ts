/**
 * Adaptive rate: the codec operating point a device sends at, picked from what it measures
 * of its own link. A pure controller: no MQTT, no timers, no clock; every call is given the
 * time (ms, monotonic), so a simulated link drives it exactly as a real one.
 *
 * Measurements, after BBR (Cardwell et al., "BBR: Congestion-Based Congestion Control",
 * ACM Queue 14(5), 2016; delivery rate as in draft-cheng-iccrg-delivery-rate-estimation):
 * - Delivery rate: each answered frame gives a sample, the wire bytes answered since the
 *   last answer before it was sent, over the time since (an idle pipe restarts that clock;
 *   the send interval bounds it from below, so a burst of answers cannot inflate it).
 *   Bandwidth = the windowed max of the samples (10 s). While the device has little to
 *   send they only bound the link from below; while frames queue at the bottleneck the
 *   bytes answered per second are the link's rate, and a step down uses that, of the last
 *   second (it follows a drop at once, and a token bucket's bursts do not inflate it).
 * - Round trip (publish -> result): the windowed min (10 s), kept with the frame size, so
 *   the base delay without serialization can be worked out for a given bandwidth.
 * - Latency (capture -> result): averaged per decide() and smoothed, counting only frames
 *   sent after the queue the previous point left has drained.
 *
 * Decisions, in decide() (about every 500 ms):
 * - The edge cap (maxKbps) always holds: a point whose bit rate at the frame rate exceeds
 *   it is never chosen, and the current one is left at once when a new cap excludes it.
 * - Step down promptly (1-3 s) on congestion: the latency over the goal, and not falling
 *   (a queue draining after a change), at two decides; no answer for twice the goal (1 s
 *   at least); or, at three decides, more than two frames beyond the round trip's worth
 *   unanswered, or frames waiting for the agent's window (sent below 95 % of the frame
 *   rate over 2 s) with over one beyond that worth out. The target is the most accurate
 *   lower point the link carries: bit rate within 80 % of the bandwidth and predicted
 *   latency (device time + base round trip + serialization + M/D/1 queueing wait) within
 *   the goal; nothing feasible: the smallest. The bandwidth measured then is a ceiling: no
 *   probe above it for 8 s.
 * - Step up conservatively, one point at a time (a probe): after 3 s at a point, with the
 *   latency under 60 % of the goal and no backlog. A probe that has to step down within
 *   20 s goes back to the point it came from and doubles the ceiling's time (to 60 s at
 *   most), so a link that cannot carry a point sees a probe now and then, not an
 *   oscillation. The ceiling lifts early when frames cross faster than it allows (a round
 *   trip under base + half the serialization time at the ceiling): the link recovered.
 *   Not any more once the link congests within 20 s of such a lift: a token bucket (tc
 *   tbf, a policer) passes a frame at once while it has tokens, so its round trips do not
 *   show its rate.
 */
import { round as roundTo } from '../core/util/stats.js';

export interface RatePoint {
  point: number;
  label: string;
  /** expected frame bytes (payload + frame header) */
  bytes: number;
  /** accuracy of the point, 0..1 */
  top1: number;
}

export interface RateOptions {
  latencyGoalMs: number;
  /** capture rate; 0 = as fast as possible: the measured send rate is used */
  fps: number;
  /** edge cap: points whose (bytes + overhead) * 8 * fps / 1000 exceed it are never chosen */
  maxKbps: number | null;
  points: RatePoint[];
  /** per-frame uplink bytes beyond the frame: the PUBLISH header and topic, the PUBACK of its
   * result, TCP/IP headers and ACKs. Default 380, as measured on a veth link at 20 frames/s
   * (about 5 packets of 66 header bytes a frame; under load TCP coalesces them: ~270) */
  overheadBytes?: number;
}

export interface RateDecision {
  from: number;
  to: number;
  reason: string;
  /** the bandwidth the decision went by: for a step down the wire rate answered in the last
   * second, otherwise the windowed max delivery rate (kbit/s) */
  bandwidthKbps: number | null;
  rttMs: number | null;
  latencyMs: number | null;
  backlog: number;
}

const WINDOW_MS = 10_000; // bandwidth max filter and RTT min filter
const RECENT_MS = 1_000; // the link as it is now, while frames queue
const HEADROOM = 0.8; // bit rate at most this share of the bandwidth
const UP_SHARE = 0.6; // probe up only with latency under this share of the goal
const DWELL_MS = 1_000; // no step down sooner after a change
const HOLD_MS = 3_000; // no step up sooner after a change
const CEILING_MS = 8_000; // how long a measured ceiling holds at first
const MAX_CEILING_MS = 60_000; // ... and at most, after failed probes
const CONFIRM_MS = 20_000; // a probe that lasts this long succeeded

interface Sample {
  t: number;
  v: number;
  bytes: number;
}
/** The delivery state when a frame was sent (BBR's per-packet P.delivered, ...). */
interface Mark {
  t: number;
  delivered: number;
  deliveredAt: number;
  firstSentAt: number;
}

const round = (x: number | null) => (x === null ? null : roundTo(x, 1));
const prune = (a: Sample[], since: number) => {
  while (a.length && a[0]!.t < since) a.shift();
};
const mostAccurate = (ps: RatePoint[]) =>
  ps.reduce<RatePoint | null>((b, p) => (b === null || p.top1 > b.top1 ? p : b), null);

export class RateController {
  private readonly opts: RateOptions;
  private readonly overhead: number;
  private cur: number;
  // delivery rate (BBR's C.delivered, C.delivered_time, C.first_sent_time)
  private delivered = 0;
  private deliveredAt = 0;
  private firstSentAt = 0;
  private inflight = 0;
  private marks: Mark[] = [];
  private sends: number[] = [];
  private firstSendAt: number | null = null;
  private bw: Sample[] = [];
  private rtt: Sample[] = [];
  /** device time of a frame (capture -> publish), smoothed */
  private localMs: number | null = null;
  // since the last change: frames sent before `cleanFrom` queued behind the old point
  private changedAt = -Infinity;
  private cleanFrom = -Infinity;
  private latSum = 0;
  private latN = 0;
  private lastMean: number | null = null;
  private latency: number | null = null;
  private pointRtt = Infinity; // min round trip of clean frames at this point
  private tickRtt = Infinity; // ... since the last decide()
  private lastAnswerAt = -Infinity;
  private over = 0;
  private grow = 0;
  // probing up
  private probe: { point: number; from: RatePoint; at: number } | null = null;
  /** the link's rate measured at the last congestion: no probe above it before `until` */
  private ceiling: { kbps: number; until: number } | null = null;
  private ceilingMs = CEILING_MS;
  /** base round trip (without serialization at the ceiling), as of the last decide() */
  private base: number | null = null;
  /** the ceiling was lifted: frames cross the bottleneck faster than it allows */
  private faster = false;
  /** whether round trips show serialization; not once the link congested soon after an
   * early lift (a token bucket passes a frame at once while it has tokens, whatever its
   * rate, so its round trips say nothing of it) */
  private rttTells = true;
  private liftedAt = -Infinity;

  constructor(opts: RateOptions, initialPoint: number) {
    if (!opts.points.length) throw new Error('RateController needs at least one point');
    this.opts = { ...opts, points: [...opts.points].sort((a, b) => a.bytes - b.bytes) };
    this.overhead = opts.overheadBytes ?? 380;
    this.cur = this.find(initialPoint).point;
  }

  get point(): number {
    return this.cur;
  }

  update(o: Partial<Pick<RateOptions, 'latencyGoalMs' | 'fps' | 'maxKbps'>>): void {
    Object.assign(this.opts, o);
  }

  /** A frame of `bytes` was published at `t`. */
  sent(_bytes: number, t: number): void {
    if (this.inflight === 0) this.deliveredAt = this.firstSentAt = t; // an idle pipe
    if (this.lastAnswerAt === -Infinity) this.lastAnswerAt = t;
    const { delivered, deliveredAt, firstSentAt } = this;
    this.marks.push({ t, delivered, deliveredAt, firstSentAt });
    if (this.marks.length > 512) this.marks.shift(); // frames never answered (lost)
    this.sends.push(t);
    if (this.firstSendAt === null) this.firstSendAt = t;
    this.inflight++;
  }

  /** The result of the frame published at `sentAt` (the `t` given to sent()) came back at
   * `t`; `latencyMs` is capture -> result. */
  answered(bytes: number, sentAt: number, t: number, latencyMs: number): void {
    this.inflight = Math.max(0, this.inflight - 1);
    this.delivered += bytes + this.overhead;
    this.deliveredAt = t;
    this.firstSentAt = sentAt;
    this.lastAnswerAt = t;
    const i = this.marks.findIndex((m) => m.t === sentAt);
    const m = i >= 0 ? this.marks.splice(i, 1)[0]! : null;
    const ms = m ? Math.max(t - m.deliveredAt, sentAt - m.firstSentAt) : 0;
    if (m && ms > 0) this.bw.push({ t, v: ((this.delivered - m.delivered) * 8) / ms, bytes });
    const rtt = t - sentAt;
    this.rtt.push({ t, v: rtt, bytes });
    const local = Math.max(0, latencyMs - rtt);
    this.localMs = this.localMs === null ? local : 0.9 * this.localMs + 0.1 * local;
    if (sentAt < this.changedAt) {
      this.cleanFrom = Math.max(this.cleanFrom, t); // the old point's queue drains
    } else if (sentAt >= this.cleanFrom) {
      this.latSum += latencyMs;
      this.latN++;
      this.pointRtt = Math.min(this.pointRtt, rtt);
      this.tickRtt = Math.min(this.tickRtt, rtt);
    }
  }

  /** Called about every 500 ms with the frames sent and not yet answered; a decision only
   * when the point changes. */
  decide(t: number, backlog: number): RateDecision | null {
    this.inflight = backlog; // the agent knows best (lost frames are never answered)
    this.prune(t);
    const fps = this.fps();
    const cur = this.find(this.cur);
    const congestion = this.congestion(t, backlog, fps);
    if (this.probe && !congestion && t - this.probe.at >= CONFIRM_MS) {
      this.probe = null; // it held
      this.ceilingMs = CEILING_MS;
    }
    this.liftCeiling(t, cur);
    const capped = this.opts.points.filter((p) => this.fitsCap(p, fps));
    if (!capped.includes(cur)) {
      const to = mostAccurate(capped.filter((p) => p.bytes <= cur.bytes)) ?? this.opts.points[0]!;
      if (to !== cur) {
        return this.change(t, to, `edge cap ${this.opts.maxKbps} kbit/s`, null, backlog);
      }
    }
    if (congestion) {
      const lower = capped.filter((p) => p.bytes < cur.bytes);
      if (!lower.length) return null; // already the smallest
      const bw = this.delivering(t);
      const best = this.best(lower, bw);
      // a probe that failed goes back to where it came from, a point the link carried
      const from = this.probe?.point === cur.point ? this.probe.from : null;
      if (from) this.ceilingMs = Math.min(2 * this.ceilingMs, MAX_CEILING_MS);
      if (t - this.liftedAt < CONFIRM_MS) this.rttTells = false;
      const kbps = bw ?? (fps ? this.kbps(cur, fps) : null);
      this.ceiling = kbps ? { kbps, until: t + this.ceilingMs } : null;
      this.base = null;
      if (from && (!best || from.top1 > best.top1))
        return this.change(t, from, congestion, bw, backlog);
      if (best) return this.change(t, best, congestion, bw, backlog);
      return this.change(
        t,
        lower[0]!,
        `${congestion}; nothing feasible: smallest point`,
        bw,
        backlog,
      );
    }
    const up = capped.find((p) => p.bytes > cur.bytes && p.top1 > cur.top1);
    const lid = this.ceiling;
    if (
      up &&
      t - this.changedAt >= HOLD_MS &&
      this.latency !== null &&
      this.latency <= UP_SHARE * this.opts.latencyGoalMs &&
      this.over === 0 &&
      backlog <= this.pipe(fps) + 1 &&
      (!lid || t >= lid.until || !fps || this.kbps(up, fps) <= HEADROOM * lid.kbps)
    ) {
      this.probe = { point: up.point, from: cur, at: t };
      const why = this.faster ? 'link faster (round trip down); probe up' : 'probe up';
      const lat = `latency ${Math.round(this.latency)} ms, goal ${this.opts.latencyGoalMs} ms`;
      return this.change(t, up, `${why}: ${lat}`, this.bandwidth(), backlog);
    }
    return null;
  }

  snapshot(t: number): {
    point: number;
    bandwidthKbps: number | null;
    rttMs: number | null;
    latencyMs: number | null;
  } {
    this.prune(t);
    return {
      point: this.cur,
      bandwidthKbps: round(this.bandwidth()),
      rttMs: round(this.rttMin()?.v ?? null),
      latencyMs: round(this.latency),
    };
  }

  /** Folds this decide's answers into the signals; the reason when congested, else null. */
  private congestion(t: number, backlog: number, fps: number | null): string | null {
    const goal = this.opts.latencyGoalMs;
    let falling = false; // a queue draining: this decide's latency well under the last's
    if (this.latN) {
      const mean = this.latSum / this.latN;
      falling = this.lastMean !== null && mean < 0.9 * this.lastMean;
      this.latency = this.latency === null ? mean : (this.latency + mean) / 2;
      this.lastMean = mean;
      this.latSum = this.latN = 0;
    }
    const silent = t - Math.max(this.lastAnswerAt, this.cleanFrom);
    const stalled = backlog > 0 && silent > Math.max(2 * goal, 1_000);
    if (stalled || ((this.latency ?? 0) > goal && !falling)) this.over++;
    else if (!falling) this.over = 0;
    // frames wait for the agent's window: sent below the frame rate
    const pipe = this.pipe(fps);
    const sending = this.sends.length / 2; // frames/s over the last 2 s
    const behind =
      this.opts.fps > 0 &&
      t - Math.max(this.changedAt, this.firstSendAt ?? t) >= 2_000 &&
      sending < 0.95 * this.opts.fps;
    this.grow = backlog > pipe + 2 || (behind && backlog > pipe + 1) ? this.grow + 1 : 0;
    if (t - this.changedAt < DWELL_MS || (this.over < 2 && this.grow < 3)) return null;
    if (stalled) return `no answer for ${Math.round(silent)} ms`;
    if (this.over >= 2) return `latency ${Math.round(this.latency!)} ms over goal ${goal} ms`;
    if (behind) return `sending ${sending} of ${this.opts.fps} frames/s, backlog ${backlog}`;
    return `backlog ${backlog} frames`;
  }

  /** Lifts the ceiling when frames cross the bottleneck quicker than it allows: a round trip
   * of this decide under base + half the serialization time at the ceiling. */
  private liftCeiling(t: number, cur: RatePoint): void {
    const tick = this.tickRtt;
    this.tickRtt = Infinity;
    const c = this.ceiling;
    if (!c || t >= c.until || !this.rttTells) return;
    const ser = (bytes: number) => ((bytes + this.overhead) * 8) / c.kbps;
    if (this.base !== null && tick < this.base + ser(cur.bytes) / 2) {
      this.ceiling = null;
      this.faster = true;
      this.liftedAt = t;
    } else {
      // the base as of this decide: the next one's answers are compared with it
      this.base = this.rtt.reduce((m, x) => Math.min(m, Math.max(0, x.v - ser(x.bytes))), Infinity);
    }
  }

  /** Frames the round trip holds at the frame rate (unknown: Infinity). */
  private pipe(fps: number | null): number {
    const rtt = Number.isFinite(this.pointRtt) ? this.pointRtt : this.rttMin()?.v;
    return fps && rtt !== undefined ? (fps * rtt) / 1000 : Infinity;
  }

  private find(point: number): RatePoint {
    const p = this.opts.points.find((q) => q.point === point);
    if (!p) throw new Error(`no operating point ${point}`);
    return p;
  }

  private prune(t: number): void {
    prune(this.bw, t - WINDOW_MS);
    prune(this.rtt, t - WINDOW_MS);
    while (this.sends.length && this.sends[0]! < t - 2_000) this.sends.shift();
  }

  /** The capture rate, or when it is 0 the send rate of the last 2 s; null: unknown. */
  private fps(): number | null {
    if (this.opts.fps > 0) return this.opts.fps;
    const n = this.sends.length;
    return n >= 2 ? ((n - 1) * 1000) / Math.max(1, this.sends[n - 1]! - this.sends[0]!) : null;
  }

  private kbps(p: RatePoint, fps: number): number {
    return ((p.bytes + this.overhead) * 8 * fps) / 1000;
  }

  /** Without a known frame rate the cap cannot be applied per point (nothing is excluded). */
  private fitsCap(p: RatePoint, fps: number | null): boolean {
    return this.opts.maxKbps === null || fps === null || this.kbps(p, fps) <= this.opts.maxKbps;
  }

  private rttMin(): Sample | null {
    return this.rtt.reduce<Sample | null>((m, s) => (m === null || s.v < m.v ? s : m), null);
  }

  /** The windowed max delivery rate (kbit/s): BBR's bottleneck bandwidth estimate. */
  private bandwidth(): number | null {
    return this.bw.reduce<number | null>((m, s) => (m === null || s.v > m ? s.v : m), null);
  }

  /** Wire kbit/s answered in the last second (null: under two answers). While frames queue
   * it is the rate the link carries now, token bucket or not. */
  private delivering(t: number): number | null {
    const r = this.rtt.filter((s) => s.t >= t - RECENT_MS);
    return r.length < 2
      ? null
      : (r.reduce((n, s) => n + s.bytes + this.overhead, 0) * 8) / RECENT_MS;
  }

  /** Predicted capture -> result latency of `p` on a link of `bw` kbit/s: device time +
   * base round trip + serialization + M/D/1 queueing wait. */
  private predict(p: RatePoint, bw: number, fps: number | null): number {
    const ser = (bytes: number) => ((bytes + this.overhead) * 8) / bw; // ms
    const m = this.rttMin();
    const base = m ? Math.max(0, m.v - ser(m.bytes)) : 0;
    const rho = fps ? this.kbps(p, fps) / bw : 0;
    const wait = rho < 1 ? (ser(p.bytes) * rho) / (2 * (1 - rho)) : Infinity;
    return (this.localMs ?? 0) + base + ser(p.bytes) + wait;
  }

  /** The most accurate of `among` the link carries with headroom within the goal. */
  private best(among: RatePoint[], bw: number | null): RatePoint | null {
    if (bw === null) return mostAccurate(among);
    const fps = this.fps();
    return mostAccurate(
      among.filter(
        (p) =>
          (fps === null || this.kbps(p, fps) <= HEADROOM * bw) &&
          this.predict(p, bw, fps) <= this.opts.latencyGoalMs,
      ),
    );
  }

  private change(
    t: number,
    to: RatePoint,
    reason: string,
    bw: number | null,
    backlog: number,
  ): RateDecision {
    const d: RateDecision = {
      from: this.cur,
      to: to.point,
      reason,
      bandwidthKbps: round(bw),
      rttMs: round(this.rttMin()?.v ?? null),
      latencyMs: round(this.latency),
      backlog,
    };
    this.cur = to.point;
    this.changedAt = this.cleanFrom = t;
    this.over = this.grow = 0;
    this.latency = this.lastMean = null;
    this.latSum = this.latN = 0;
    this.pointRtt = this.tickRtt = Infinity;
    this.faster = false;
    if (this.probe?.point !== to.point) this.probe = null;
    return d;
  }
}

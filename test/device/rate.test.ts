/** The adaptive-rate controller on a simulated link: a bottleneck of so many kbit/s with a
 * FIFO queue, a base round trip, and a device that captures at its frame rate with the
 * agent's in-flight window of 4. Deterministic: 1 ms steps, no timers. */
import test from 'ava';
import { RateController, type RateDecision, type RatePoint } from '../../device-agent/rate.js';

/** The shipped AECNN bundle's points: frame bytes on the wire and top-1. */
const AECNN: RatePoint[] = [
  { point: 0, label: 'k=1', bytes: 56, top1: 0.42 },
  { point: 1, label: 'k=2', bytes: 87, top1: 0.57 },
  { point: 2, label: 'k=4', bytes: 147, top1: 0.73 },
  { point: 3, label: 'k=8', bytes: 238, top1: 0.77 },
  { point: 4, label: 'k=16', bytes: 445, top1: 0.81 },
];
const GOAL = 250;
const FPS = 20;
/** What the simulated uplink adds to a frame: headers, ACKs, the PUBACK of its result (the
 * controller assumes 380 B; the real one is never quite that). */
const WIRE_OVERHEAD = 420;

interface Phase {
  /** the phase lasts until this time (ms) */
  until: number;
  kbps: number;
}
interface SimOptions {
  phases: Phase[];
  start: number;
  rttMs?: number;
  maxKbps?: number | null;
  fps?: number;
  /** a token bucket of this many bytes (like tc tbf) instead of a serializing link: a frame
   * leaves at once while there are tokens, so round trips do not show the rate */
  bucketBytes?: number;
  /** called before each decide(): change the controller mid-run */
  before?: (c: RateController, t: number) => void;
}
interface Frame {
  capturedAt: number;
  point: number;
  latency: number;
}
interface Sim {
  changes: (RateDecision & { t: number })[];
  frames: Frame[];
  /** the point in force at time t */
  pointAt: (t: number) => number;
  controller: RateController;
}

/** Wire bit rate of a point at the frame rate, as the link sees it. */
const wireKbps = (p: number, fps = FPS) => ((AECNN[p]!.bytes + WIRE_OVERHEAD) * 8 * fps) / 1000;

function simulate(o: SimOptions): Sim {
  const fps = o.fps ?? FPS;
  const rtt = o.rttMs ?? 40;
  const end = o.phases[o.phases.length - 1]!.until;
  const c = new RateController(
    { latencyGoalMs: GOAL, fps, maxKbps: o.maxKbps ?? null, points: AECNN },
    o.start,
  );
  const queue: { bits: number; bytes: number; sentAt: number; frame: Frame }[] = [];
  const answers: { at: number; bytes: number; sentAt: number; frame: Frame }[] = [];
  const frames: Frame[] = [];
  const changes: Sim['changes'] = [];
  const interval = fps > 0 ? 1000 / fps : 0;
  let next = 0;
  let inflight = 0;
  let tokens = (o.bucketBytes ?? 0) * 8;
  const window = 4;
  for (let t = 0; t < end; t++) {
    while (answers.length && answers[0]!.at <= t) {
      const a = answers.shift()!;
      a.frame.latency = a.at - a.frame.capturedAt;
      c.answered(a.bytes, a.sentAt, a.at, a.frame.latency);
      inflight--;
    }
    if (t % 500 === 0) {
      o.before?.(c, t);
      const d = c.decide(t, inflight);
      if (d) changes.push({ ...d, t });
    }
    // the device: one frame per interval while the window has room (the agent's pacing)
    if (t >= next && inflight < window) {
      const bytes = AECNN[c.point]!.bytes;
      const frame: Frame = { capturedAt: t, point: c.point, latency: NaN };
      frames.push(frame);
      queue.push({ bits: (bytes + WIRE_OVERHEAD) * 8, bytes, sentAt: t, frame });
      c.sent(bytes, t);
      inflight++;
      next = Math.max(next + interval, t - interval);
    }
    // the bottleneck: kbit/s = bits per ms, first in first out
    const kbps = o.phases.find((p) => t < p.until)!.kbps;
    if (o.bucketBytes) {
      tokens = Math.min(o.bucketBytes * 8, tokens + kbps);
      while (queue.length && tokens >= queue[0]!.bits) {
        const q = queue.shift()!;
        tokens -= q.bits;
        answers.push({ at: t + rtt, bytes: q.bytes, sentAt: q.sentAt, frame: q.frame });
      }
      continue;
    }
    let budget = kbps;
    while (budget > 0 && queue.length) {
      const q = queue[0]!;
      const used = Math.min(budget, q.bits);
      q.bits -= used;
      budget -= used;
      if (q.bits > 0) break;
      queue.shift();
      const done = t + 1 - budget / kbps;
      answers.push({ at: done + rtt, bytes: q.bytes, sentAt: q.sentAt, frame: q.frame });
    }
  }
  const pointAt = (t: number) => {
    let p = o.start;
    for (const ch of changes) if (ch.t <= t) p = ch.to;
    return p;
  };
  return { changes, frames, pointAt, controller: c };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};
/** Latencies of the frames captured in [from, to) that were answered. */
const latencies = (s: Sim, from: number, to: number) =>
  s.frames
    .filter((f) => f.capturedAt >= from && f.capturedAt < to && !Number.isNaN(f.latency))
    .map((f) => f.latency);
const firstChangeAfter = (s: Sim, t: number) => s.changes.find((c) => c.t > t);
const timeline = (s: Sim) =>
  s.changes.map((c) => `${(c.t / 1000).toFixed(1)}s ${c.from}->${c.to} ${c.reason}`).join('\n');

test('a fast link: it probes up one point at a time to the most accurate point and stays', (t) => {
  const s = simulate({ phases: [{ until: 60_000, kbps: 2000 }], start: 0 });
  t.log(timeline(s));
  t.deepEqual(
    s.changes.map((c) => [c.from, c.to]),
    [
      [0, 1],
      [1, 2],
      [2, 3],
      [3, 4],
    ],
  );
  t.true(s.pointAt(20_000) === 4, 'at the best point within 20 s');
  t.true(median(latencies(s, 20_000, 60_000)) < GOAL / 2);
  const snap = s.controller.snapshot(60_000);
  t.is(snap.point, 4);
  t.true(snap.rttMs !== null && snap.rttMs >= 40 && snap.rttMs < 50, `rtt ${snap.rttMs}`);
  t.true(snap.bandwidthKbps !== null && snap.bandwidthKbps > 0);
});

test('bandwidth drops: down within seconds to a point that fits; recovers: back up', (t) => {
  const drop = 20_000;
  const rise = 60_000;
  const s = simulate({
    phases: [
      { until: drop, kbps: 2000 },
      { until: rise, kbps: 100 },
      { until: 100_000, kbps: 2000 },
    ],
    start: 4,
  });
  t.log(timeline(s));
  t.is(firstChangeAfter(s, 0)?.t, firstChangeAfter(s, drop)?.t, 'no change before the drop');
  const down = firstChangeAfter(s, drop)!;
  t.true(down.t - drop <= 2_000, `first step down ${down.t - drop} ms after the drop`);
  t.true(down.to < 4);
  // within 3 s the point in force fits the link, and latency is back under the goal
  t.true(wireKbps(s.pointAt(drop + 3_000)) <= 100, `point ${s.pointAt(drop + 3_000)} at +3 s`);
  t.true(median(latencies(s, drop + 5_000, rise)) <= GOAL);
  // after the drop the fitting point is what runs most of the time (probes are brief)
  const fit = s.frames.filter(
    (f) => f.capturedAt >= drop + 3_000 && f.capturedAt < rise && wireKbps(f.point) <= 100,
  ).length;
  const all = s.frames.filter((f) => f.capturedAt >= drop + 3_000 && f.capturedAt < rise).length;
  t.true(fit / all > 0.8, `${fit}/${all} frames at a point that fits`);
  // recovery: round trips shrink (frames serialize faster), so the ceiling the drop set
  // lifts at once, and the probes climb back to the best point
  const back = s.changes.find((c) => c.t > rise && c.to === 4);
  t.truthy(back, 'back at point 4');
  t.true(back!.t - rise <= 10_000, `back at point 4 ${back!.t - rise} ms after recovery`);
  t.regex(firstChangeAfter(s, rise)!.reason, /link faster/);
  t.is(s.pointAt(100_000), 4);
});

test('the edge cap holds: never a point above maxKbps, and a new cap is obeyed at once', (t) => {
  // the controller's view: (bytes + 380) * 8 * 20 / 1000 -> 69.8, 74.7, 84.3, 98.9, 132 kbit/s
  const s = simulate({ phases: [{ until: 40_000, kbps: 2000 }], start: 0, maxKbps: 90 });
  t.log(timeline(s));
  t.true(s.frames.every((f) => f.point <= 2));
  t.is(s.pointAt(40_000), 2);

  const capAt = 20_000;
  const late = simulate({
    phases: [{ until: 40_000, kbps: 2000 }],
    start: 4,
    before: (c, now) => now === capAt && c.update({ maxKbps: 80 }),
  });
  t.log(timeline(late));
  const ch = firstChangeAfter(late, 0)!;
  t.like(ch, { t: capAt, from: 4, to: 1 });
  t.regex(ch.reason, /edge cap 80/);
  t.true(late.frames.filter((f) => f.capturedAt > capAt).every((f) => f.point <= 1));
});

test('a steady link: few changes, no oscillation', (t) => {
  // 120 kbit/s carries point 3 (105 kbit/s on the wire), not point 4 (138)
  const s = simulate({ phases: [{ until: 180_000, kbps: 120 }], start: 4 });
  t.log(timeline(s));
  t.true(s.changes.length <= 12, `${s.changes.length} changes in 180 s`);
  const lastMinute = s.changes.filter((c) => c.t >= 120_000).length;
  t.true(lastMinute <= 2, `${lastMinute} changes in the last minute`);
  t.true(median(latencies(s, 10_000, 180_000)) <= GOAL);
  // and a link that carries everything: no change at all
  const fast = simulate({ phases: [{ until: 60_000, kbps: 5000 }], start: 4 });
  t.deepEqual(fast.changes, []);
});

test('a token bucket (round trips do not show the rate): still few changes', (t) => {
  const s = simulate({ phases: [{ until: 180_000, kbps: 120 }], start: 4, bucketBytes: 4096 });
  t.log(timeline(s));
  t.true(s.changes.length <= 12, `${s.changes.length} changes in 180 s`);
  const lastMinute = s.changes.filter((c) => c.t >= 120_000).length;
  t.true(lastMinute <= 2, `${lastMinute} changes in the last minute`);
  t.true(median(latencies(s, 10_000, 180_000)) <= GOAL);
});

test('nothing feasible: the smallest point', (t) => {
  // not even point 0 (76 kbit/s on the wire) fits 50 kbit/s
  const slow = simulate({ phases: [{ until: 30_000, kbps: 50 }], start: 3 });
  t.log(timeline(slow));
  t.is(slow.pointAt(30_000), 0);
  t.true(slow.pointAt(5_000) === 0, 'at the smallest point within 5 s');
  // a base round trip longer than the goal: no point can meet it
  const far = simulate({ phases: [{ until: 30_000, kbps: 2000 }], start: 4, rttMs: 400 });
  t.log(timeline(far));
  t.is(far.pointAt(30_000), 0);
  t.regex(far.changes[0]!.reason, /nothing feasible/);
});

test('fps 0 (as fast as possible): the measured send rate stands in for the frame rate', (t) => {
  const s = simulate({ phases: [{ until: 30_000, kbps: 2000 }], start: 4, fps: 0, maxKbps: 100 });
  t.log(timeline(s));
  // unpaced, the window of 4 keeps the sender at ~4 frames per round trip (~100 fps):
  // even point 0 exceeds 100 kbit/s then, so the cap takes it to the smallest
  t.is(s.pointAt(30_000), 0);
  t.regex(s.changes[0]!.reason, /edge cap/);
});

test('the controller checks its inputs', (t) => {
  t.throws(() => new RateController({ latencyGoalMs: 100, fps: 5, maxKbps: null, points: [] }, 0));
  t.throws(
    () => new RateController({ latencyGoalMs: 100, fps: 5, maxKbps: null, points: AECNN }, 9),
    { message: /no operating point 9/ },
  );
  const c = new RateController({ latencyGoalMs: 100, fps: 5, maxKbps: null, points: AECNN }, 2);
  t.is(c.point, 2);
  t.is(c.decide(0, 0), null, 'no measurement, no change');
  t.deepEqual(c.snapshot(0), { point: 2, bandwidthKbps: null, rttMs: null, latencyMs: null });
});

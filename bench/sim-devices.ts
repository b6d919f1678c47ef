/**
 * Simulated devices for load tests (bench throughput, soak): each is a raw MQTT 3.1.1
 * connection (rawClient) replaying real encoded frames with fresh frame ids at QoS 1, as
 * an agent sends them, and reading its answers (results and errors, QoS 0). Light enough
 * that 1,000 of them leave the CPU to the edge. Every frame sent is pending until its
 * answer arrives; the time to the answer is the device-side latency. Like an agent, a
 * device keeps at most `window` frames unanswered (the agent's default, 4): a frame due
 * while the window is full is skipped (a camera's stale frame), not queued.
 */
import type { Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { resolveBundle } from '../core/model/bundle.js';
import { decodeFrame, encodeFrame, type Frame } from '../core/wire/frame.js';
import { deviceTopic } from '../core/wire/topics.js';
import { pushBounded } from '../core/util/stats.js';
import { HeadPipeline } from '../device-agent/pipeline.js';
import { frameSource } from '../device-agent/source.js';
import { rawClient } from './connections.js';

/** Real frames: `count` shipped sample images through the model's head and codec. */
export async function sampleFrames(
  model: string,
  codec: string,
  point: number,
  count = 32,
): Promise<Frame[]> {
  const head = await HeadPipeline.create(
    await resolveBundle(model, { codec: codec }),
    codec,
    point,
  );
  const frames: Frame[] = [];
  try {
    for await (const s of frameSource({ source: 'sample', limit: count })) {
      frames.push(decodeFrame((await head.encode(s, 1)).frame));
    }
  } finally {
    await head.close();
  }
  return frames;
}

export interface SimCounts {
  sent: number;
  /** Frames due while the device's window was full. */
  skipped: number;
  results: number;
  errors: number;
  overloaded: number;
}

export class SimDevices {
  readonly counts: SimCounts = { sent: 0, skipped: 0, results: 0, errors: 0, overloaded: 0 };
  /** Latency (ms) of each result since `mark()`. */
  latencies: number[] = [];
  /** `<device>/<frameId>` -> when it was sent (performance.now()). */
  readonly pending = new Map<string, number>();
  private readonly next: number[];
  /** Frames each device has unanswered. */
  private readonly open: number[];
  private messageId = 1;
  private timers: NodeJS.Timeout[] = [];

  private constructor(
    private readonly socks: Socket[],
    private readonly ids: string[],
    private readonly fleet: string,
    private readonly frames: readonly Frame[],
    private readonly window: number,
  ) {
    this.next = socks.map(() => 0);
    this.open = socks.map(() => 0);
  }

  /** Connect `count` devices `<prefix><i>` of `fleet` (100 at a time) and subscribe each
   * to its answers. */
  static async connect(
    url: string,
    o: { fleet: string; count: number; frames: readonly Frame[]; prefix?: string; window?: number },
  ): Promise<SimDevices> {
    const prefix = o.prefix ?? 's';
    const ref: { self?: SimDevices } = {}; // answers before it exists are not ours
    const one = async (i: number) => {
      const id = `${prefix}${i}`;
      const sock = await rawClient(url, `sim-${o.fleet}-${id}`, {
        onPacket: (p) => {
          if (p.cmd === 'publish') ref.self?.answer(i, id, p.topic, p.payload as Buffer);
        },
      });
      sock.on('error', () => undefined);
      sock.write(
        mqttPacket.generate({
          cmd: 'subscribe',
          messageId: 1,
          subscriptions: [
            { topic: deviceTopic(o.fleet, id, 'result'), qos: 0 },
            { topic: deviceTopic(o.fleet, id, 'error'), qos: 0 },
          ],
        }),
      );
      return sock;
    };
    const socks: Socket[] = [];
    for (let i = 0; i < o.count; i += 100) {
      const n = Math.min(100, o.count - i);
      socks.push(...(await Promise.all(Array.from({ length: n }, (_, k) => one(i + k)))));
    }
    const ids = socks.map((_, i) => `${prefix}${i}`);
    const self = new SimDevices(socks, ids, o.fleet, o.frames, o.window ?? 4);
    ref.self = self;
    await new Promise((r) => setTimeout(r, 500)); // the SUBACKs
    return self;
  }

  get size(): number {
    return this.socks.length;
  }

  private answer(i: number, id: string, topic: string, payload: Buffer): void {
    let r: { frameId?: number; code?: string };
    try {
      r = JSON.parse(payload.toString()) as typeof r;
    } catch {
      return;
    }
    const key = `${id}/${r.frameId}`;
    const sentAt = this.pending.get(key);
    if (sentAt === undefined) return;
    this.pending.delete(key);
    this.open[i]!--;
    if (topic.endsWith('/result')) {
      this.counts.results++;
      pushBounded(this.latencies, performance.now() - sentAt, 1_000_000);
    } else {
      this.counts.errors++;
      if (r.code === 'overloaded') this.counts.overloaded++;
    }
  }

  /** Device `i` sends its next frame, if its window has room. */
  send(i: number): void {
    if (this.open[i]! >= this.window) {
      this.counts.skipped++;
      return;
    }
    this.open[i]!++;
    const f = this.frames[(this.next[i]! + i) % this.frames.length]!;
    const frameId = (i * 1_000_000 + this.next[i]!++) >>> 0;
    const id = this.ids[i]!;
    this.pending.set(`${id}/${frameId}`, performance.now());
    this.counts.sent++;
    this.messageId = (this.messageId % 65535) + 1;
    this.socks[i]!.write(
      mqttPacket.generate({
        cmd: 'publish',
        topic: deviceTopic(this.fleet, id, 'features'),
        payload: Buffer.from(encodeFrame({ ...f, frameId, captureTs: Date.now() })),
        qos: 1,
        messageId: this.messageId,
        retain: false,
        dup: false,
      }),
    );
  }

  /** Every device sends at `fps` (staggered) until stop(). */
  start(fps: number): void {
    this.stop();
    const period = 1000 / fps;
    this.timers = this.socks.map((_, i) =>
      setTimeout(
        () => {
          this.send(i);
          this.timers[i] = setInterval(() => this.send(i), period);
        },
        (i / this.socks.length) * period,
      ),
    );
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  /** Start a new measurement window: counts and latencies from zero. */
  mark(): void {
    Object.assign(this.counts, { sent: 0, skipped: 0, results: 0, errors: 0, overloaded: 0 });
    this.latencies = [];
  }

  /** Wait until every frame sent is answered, at most `ms`; resolves with what is left. */
  async drain(ms: number): Promise<number> {
    const end = Date.now() + ms;
    while (this.pending.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    return this.pending.size;
  }

  close(): void {
    this.stop();
    for (const s of this.socks) s.destroy();
  }
}

/**
 * A decoder worker as a plain MQTT client on any MQTT 5 broker with shared subscriptions
 * (`splitfleet worker`; tested with Debian's mosquitto). Workers of one group share the
 * feature stream through `$share/<group>/<base>/<fleet>/device/+/features`: the broker
 * hands each frame to one of them. A frame is acknowledged (PUBACK) only once its result
 * or error is in the client's QoS 1 outgoing store, so a worker that dies mid-decode
 * leaves it unacknowledged for the broker to hand on; a worker that stops leaves the
 * group first, finishes what it holds and flushes its answers before it disconnects, so
 * adding or removing workers under load loses no frame.
 */
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { onnxEngine } from '../../core/engine/onnx.js';
import type { Engine } from '../../core/engine/engine.js';
import type { Bundle } from '../../core/model/load.js';
import { errorMessage } from '../../core/wire/messages.js';
import {
  DEFAULT_BASE,
  deviceFilter,
  deviceTopic,
  loginClientId,
  parseTopic,
} from '../../core/wire/topics.js';
import { log } from '../../core/util/log.js';
import { DecodeFailure, FrameDecoder } from './decoder.js';

export interface ShareWorkerOptions {
  url: string;
  /** The shared-subscription group; workers of one group share the frames. */
  group: string;
  workerId: string;
  bundles: readonly Bundle[];
  fleet?: string;
  base?: string;
  engine?: Engine;
  threads?: number;
  username?: string;
  password?: string;
  ca?: Buffer;
}

export interface ShareWorkerStats {
  frames: number;
  results: number;
  errors: number;
}

export class ShareWorker {
  readonly stats: ShareWorkerStats = { frames: 0, results: 0, errors: 0 };
  private inFlight = 0;
  private drained: (() => void)[] = [];

  private constructor(
    private readonly client: MqttClient,
    private readonly decoder: FrameDecoder,
    private readonly filter: string,
    private readonly opts: ShareWorkerOptions,
  ) {}

  static async start(o: ShareWorkerOptions): Promise<ShareWorker> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(o.group)) throw new Error(`invalid share group ${o.group}`);
    const decoder = await FrameDecoder.create(o.bundles, o.engine ?? onnxEngine, {
      threads: o.threads ?? 1,
      edgeId: o.workerId,
    });
    const options: IClientOptions = {
      protocolVersion: 5,
      // a login's client id is `<user>:<suffix>` (the splitfleet edge binds ids to logins)
      clientId: o.username
        ? loginClientId(o.username, o.workerId)
        : `sf-worker-${o.workerId}`.slice(0, 64),
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(o.username ? { username: o.username, password: o.password } : {}),
      ...(o.ca ? { ca: o.ca } : {}),
    };
    let client: MqttClient;
    try {
      client = await connectAsync(o.url, options);
    } catch (e) {
      await decoder.close();
      throw e;
    }
    const base = o.base ?? DEFAULT_BASE;
    const filter = `$share/${o.group}/${deviceFilter('features', o.fleet ?? '+', base)}`;
    const w = new ShareWorker(client, decoder, filter, o);
    // acknowledge a frame only once it is answered (mqtt.js sends the PUBACK on done)
    client.handleMessage = (packet, done) => {
      w.onFrame(packet.topic, packet.payload as Buffer).then(
        () => done(),
        () => done(),
      );
    };
    await client.subscribeAsync(filter, { qos: 1 });
    log.info({ worker: o.workerId, filter }, 'share worker up');
    return w;
  }

  private async onFrame(topic: string, payload: Buffer): Promise<void> {
    const base = this.opts.base ?? DEFAULT_BASE;
    const t = parseTopic(topic, base);
    if (!t || t.kind !== 'device' || t.channel !== 'features') return;
    this.inFlight++;
    this.stats.frames++;
    try {
      let answerTopic: string;
      let body: unknown;
      try {
        const now = Date.now();
        body = await this.decoder.run(t.deviceId, this.decoder.parse(payload, now), now);
        answerTopic = deviceTopic(t.fleet, t.deviceId, 'result', base);
        this.stats.results++;
      } catch (e) {
        const f = DecodeFailure.from(e, 'inference-failed', null);
        body = errorMessage(t.deviceId, f.frameId, f.code, f.message, this.opts.workerId);
        answerTopic = deviceTopic(t.fleet, t.deviceId, 'error', base);
        this.stats.errors++;
      }
      // handed to the client's QoS 1 store, not awaited: mqtt.js reads the broker's PUBACK
      // only after this frame's own PUBACK is sent (packets are handled in order)
      this.client.publish(answerTopic, JSON.stringify(body), { qos: 1 }, (err) => {
        if (err) log.warn({ worker: this.opts.workerId, err: err.message }, 'answer not sent');
      });
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) for (const f of this.drained.splice(0)) f();
    }
  }

  /** Leave the group, finish the frames held, then disconnect. */
  async stop(): Promise<void> {
    await this.client.unsubscribeAsync(this.filter).catch(() => undefined);
    if (this.inFlight > 0) {
      await Promise.race([
        new Promise<void>((r) => this.drained.push(r)),
        new Promise((r) => setTimeout(r, 30_000)),
      ]);
    }
    await this.client.endAsync();
    await this.decoder.close();
    log.info({ worker: this.opts.workerId, ...this.stats }, 'share worker stopped');
  }
}

/**
 * Images received on an MQTT topic: a camera or a gateway publishes JPEG/PNG/WebP files
 * (one image per message) and the agent encodes them. The spec is a URL whose path is the
 * topic filter (wildcards allowed; `%23` may stand for `#`):
 *   mqtt://[user[:password]@]host[:port]/cameras/gate/+/jpeg   (also mqtts://, ws://, wss://)
 * A password may also come from SPLITFLEET_SOURCE_PASSWORD. Messages are kept in a
 * drop-oldest queue (default 4), so a publisher faster than the agent's frame rate costs
 * dropped images (counted), never unbounded memory. Payloads are decoded by the pipeline
 * (sharp); one that is not an image is skipped and counted like any bad image.
 */
import { connect, type IClientOptions } from 'mqtt';
import type { Sample } from '../../core/data/cifar.js';
import { log } from '../../core/util/log.js';
import { DropOldestQueue } from './queue.js';
import { MAX_IMAGE_BYTES } from './split.js';

const SPEC = /^(mqtts?|wss?):\/\/([^/]+)\/(.+)$/;

export function isMqttSource(spec: string): boolean {
  return /^(mqtts?|wss?):\/\//.test(spec);
}

export function parseMqttSource(spec: string): { url: string; topic: string } {
  const m = SPEC.exec(spec);
  if (!m)
    throw new Error(`MQTT source ${JSON.stringify(spec)}: use mqtt://host[:port]/topic/filter`);
  const topic = decodeURIComponent(m[3]!);
  if (/[#+]/.test(topic.replace(/(^|\/)([#+])(?=\/|$)/g, '$1')))
    throw new Error(`MQTT source: bad wildcard in topic filter ${JSON.stringify(topic)}`);
  return { url: `${m[1]}://${m[2]}`, topic };
}

export interface MqttSourceOptions {
  spec: string;
  /** Images kept for the agent, oldest dropped first (default 4). */
  keep?: number;
  /** Trust these certificates for mqtts:// (the agent's --ca). */
  ca?: Buffer;
}

export async function* mqttSource(opts: MqttSourceOptions): AsyncGenerator<Sample> {
  const { url, topic } = parseMqttSource(opts.spec);
  const q = new DropOldestQueue<Sample>(opts.keep ?? 4);
  const parsed = new URL(url);
  const options: IClientOptions = {
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.username && (parsed.password || process.env.SPLITFLEET_SOURCE_PASSWORD)
      ? {
          password: parsed.password
            ? decodeURIComponent(parsed.password)
            : process.env.SPLITFLEET_SOURCE_PASSWORD,
        }
      : {}),
    ...(opts.ca ? { ca: opts.ca } : {}),
  };
  const client = connect(`${parsed.protocol}//${parsed.host}`, options);
  let n = 0;
  client.on('connect', () => {
    client.subscribe(topic, { qos: 0 }, (err, granted) => {
      const refused = granted?.some((g) => g.qos === 128);
      if (err || refused) {
        q.end(
          new Error(
            `MQTT source: subscription to ${topic} refused${err ? `: ${err.message}` : ''}`,
          ),
        );
      } else log.info({ source: url, topic }, 'MQTT image source subscribed');
    });
  });
  client.on('error', (e) => {
    // a refused login ends the source; other errors are retried by mqtt.js
    if (/bad user ?name or password|not authori[sz]ed/i.test(e.message)) q.end(e);
    else log.warn({ source: url, err: e.message }, 'MQTT image source error');
  });
  client.on('message', (t, payload) => {
    if (payload.length === 0 || payload.length > MAX_IMAGE_BYTES) return;
    q.push({ name: `${t}#${n++}`, label: undefined, bytes: new Uint8Array(payload) });
  });
  try {
    for (;;) {
      const s = await q.take();
      if (!s) return;
      yield s;
    }
  } finally {
    q.end();
    await client.endAsync(true);
  }
}

/**
 * The device's ops (core/wire/rpc.ts DEVICE_OPS), requested on `.../request/<op>` and
 * answered on `.../response/<op>`: ping, get-config, restart-pipeline. An unknown op, a
 * body that is not a JSON object or a handler that fails gets an error answer; a retained
 * request is ignored (it would run again at every start).
 */
import { serveOps, type DeviceOp, type OpHandler } from '../core/wire/rpc.js';
import { limitedLog } from '../core/util/log.js';
import type { RuntimeConfig } from './config.js';
import type { Head } from './head.js';

export interface OpsDeps {
  deviceId: string;
  base: string;
  /** The agent's source spec. */
  source: string;
  config: RuntimeConfig;
  head: Head;
  /** Frames accepted and not yet answered. */
  pending: () => number;
  /** Publish an answer; must not reject. */
  publish: (topic: string, payload: string) => Promise<void>;
}

/** The handler for every message on the device's `.../request/+`; never throws. */
export function deviceOps(d: OpsDeps): (topic: string, payload: Buffer, retained: boolean) => void {
  const ops: Record<DeviceOp, OpHandler> = {
    ping: () => Promise.resolve({ ts: Date.now(), pending: d.pending() }),
    'get-config': () => {
      const s = d.config.settings;
      return Promise.resolve({
        configId: s.configId,
        model: d.config.modelRef,
        codec: s.codec,
        point: s.point,
        fps: s.fps,
        source: d.source,
      });
    },
    'restart-pipeline': async () => {
      const { bundle, codec, point, engine } = d.config.settings;
      await d.head.replace({ bundle, codec, point, engine });
      return { restarted: true };
    },
  };
  return serveOps({
    base: d.base,
    ops,
    publish: d.publish,
    warn: (what, fields) =>
      limitedLog.warn(`${what}:${d.deviceId}`, { device: d.deviceId, ...fields }, what),
  });
}

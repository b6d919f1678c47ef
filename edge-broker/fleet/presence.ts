/**
 * Presence: the devices' retained status (birth, clean death, last will) and their traffic
 * fed to the fleet monitor (monitor.ts), whose report is published retained on
 * `.../edge/<id>/devices` every 2 s; and the edge's own retained status, online while it
 * serves.
 */
import { background, limitedLog } from '../../core/util/log.js';
import { bundleRefString } from '../../core/wire/ota.js';
import { parseDeviceStatus, type EdgeStatus } from '../../core/wire/messages.js';
import { deviceFilter, edgeStatusTopic, edgeTopic, parseTopic } from '../../core/wire/topics.js';
import { publishJson, subscribe, type EdgeBroker } from '../broker.js';
import type { EdgeBus, Part } from '../bus.js';
import type { DeviceView, FleetMonitor } from './monitor.js';

/** Fleets whose devices report one edge publishes at most (each its own retained message). */
const MAX_REPORTED_FLEETS = 256;
/** How often the devices report is published. */
const REPORT_MS = 2000;

export interface PresenceOptions {
  broker: EdgeBroker;
  bus: EdgeBus;
  monitor: FleetMonitor;
  base: string;
  /** The fleet whose devices are tracked; '+': every fleet. */
  fleet: string;
  edgeId: string;
  /** The fleet the devices report is published under. */
  statusFleet: string;
  /** The report's devices (default: the monitor's, every device seen). */
  table?: () => DeviceView[];
}

/** The devices' presence and traffic, in the monitor; a device's frames answered with
 * errors are logged, once a minute per device and code (with how many were held back). */
export class DevicePresence implements Part {
  readonly name = 'device presence';
  private readonly offBus: (() => void)[] = [];
  private unsubscribe: (() => Promise<void>) | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly o: PresenceOptions) {}

  async start(): Promise<void> {
    const { o } = this;
    const m = o.monitor;
    this.offBus.push(
      o.bus.on('frameReceived', (e) => m.frame(e.fleet, e.deviceId, e.bytes, e.at)),
      o.bus.on('result', ({ fleet, deviceId, result: r }) => {
        const model = bundleRefString({ name: r.model, version: r.modelVersion });
        m.result(fleet, deviceId, model, r.codec, r.latency.edgeMs);
      }),
      o.bus.on('frameError', (e) => {
        m.error(e.fleet, e.deviceId, e.code);
        limitedLog.warn(
          `device-error:${e.fleet}/${e.deviceId}:${e.code}`,
          { fleet: e.fleet, device: e.deviceId, code: e.code, frameId: e.frameId },
          'device frame answered with an error',
        );
      }),
    );
    this.unsubscribe = await subscribe(
      o.broker,
      deviceFilter('status', o.fleet, o.base),
      (p, b) => {
        const t = parseTopic(p.topic, o.base);
        if (!t || t.kind !== 'device') return;
        const status = parseDeviceStatus(b);
        if (!status) return;
        m.status(t.fleet, t.deviceId, status);
        o.bus.emit('deviceStatus', { fleet: t.fleet, deviceId: t.deviceId, status });
      },
    );
    // one report per fleet, under that fleet's topic: a login pinned to one fleet reads its
    // own devices only, also from an edge that serves every fleet ('+')
    const report = async () => {
      const devices = o.table ? o.table() : m.snapshot();
      const byFleet = new Map<string, typeof devices>([[o.statusFleet, []]]);
      for (const d of devices) {
        let list = byFleet.get(d.fleet);
        if (!list) {
          if (byFleet.size >= MAX_REPORTED_FLEETS) continue;
          byFleet.set(d.fleet, (list = []));
        }
        list.push(d);
      }
      const ts = Date.now();
      await Promise.all(
        [...byFleet].map(([fleet, list]) =>
          publishJson(
            o.broker,
            edgeTopic(fleet, o.edgeId, 'devices', o.base),
            { edgeId: o.edgeId, ts, devices: list },
            true,
          ),
        ),
      );
    };
    await report(); // the devices of the fleet file are listed from the start
    this.timer = setInterval(() => background(report(), 'devices report'), REPORT_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (let off = this.offBus.pop(); off; off = this.offBus.pop()) off();
    await this.unsubscribe?.();
  }
}

export interface AnnounceOptions {
  broker: EdgeBroker;
  base: string;
  edgeId: string;
  statusFleet: string;
  /** The models the edge serves (`name@version`). */
  models: string[];
  workers: number;
}

/** The edge's own retained status: online once every part is up, offline as it stops. */
export class EdgeAnnouncer implements Part {
  readonly name = 'edge status';
  private online = false;

  constructor(private readonly o: AnnounceOptions) {}

  private get topic(): string {
    return edgeStatusTopic(this.o.statusFleet, this.o.edgeId, this.o.base);
  }

  async start(): Promise<void> {
    const { models, workers } = this.o;
    const body: EdgeStatus = { state: 'online', ts: Date.now(), models, workers };
    this.online = true;
    await publishJson(this.o.broker, this.topic, body, true);
  }

  async stop(): Promise<void> {
    if (!this.online) return;
    this.online = false;
    const body: EdgeStatus = { state: 'offline', ts: Date.now() };
    await publishJson(this.o.broker, this.topic, body, true);
  }
}

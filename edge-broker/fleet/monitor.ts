/**
 * What the edge sees of its fleet: presence from the devices' retained status (with
 * Sparkplug-style birth/death sequence numbers, so a stale will never marks a live device
 * offline), per-device traffic (frames/s, bytes/s, edge latency, errors by code), and the
 * same as Prometheus metrics (prom-client) for scraping.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DeviceSettings, DeviceStatus, ErrorCode } from '../../core/wire/messages.js';
import type { DeviceConfigState } from './configs.js';

/** Rates are over this window. */
const WINDOW_MS = 10_000;

/** The config the edge wants a device to run: the fleet file's, with the operator's
 * overrides and any rollout pin. */
export interface WantedConfig {
  configId: string;
  group: string | null;
  settings: DeviceSettings;
  /** Settings an operator override sets (the device's own or its group's). */
  overridden: string[];
}

/** The config a device says it runs (its retained status, or its last config answer). */
export interface RunningConfig {
  configId: string | null;
  model: string | null;
  codec: string | null;
  point: number | null;
}

export interface DeviceView {
  fleet: string;
  device: string;
  /** online, offline, or never seen (a device of the fleet file the edge has not heard). */
  state: 'online' | 'offline' | 'never seen';
  online: boolean;
  /** Whether the fleet file in force names it. */
  inFleetFile: boolean;
  wanted: WantedConfig | null;
  running: RunningConfig | null;
  /** Why it refused the wanted config (its last answer), or null. */
  refused: string | null;
  refusedConfigId: string | null;
  seq: number | null;
  model: string | null;
  codec: string | null;
  point: number | null;
  configId: string | null;
  framesPerSecond: number;
  bytesPerSecond: number;
  /** Median edge latency (receive -> result published) over the window, ms. */
  edgeLatencyMsP50: number | null;
  frames: number;
  results: number;
  errors: Record<string, number>;
  /** Unix ms of the last status or frame. */
  lastSeen: number | null;
}

interface Track {
  view: DeviceView;
  recent: { at: number; bytes: number }[];
  latencies: { at: number; ms: number }[];
}

/** Devices tracked at most; past it, the one heard from least recently is dropped. */
export const MAX_TRACKED = 100_000;

export class FleetMonitor {
  readonly registry = new Registry();
  private readonly devices = new Map<string, Track>();
  private readonly frames: Counter<'fleet'>;
  private readonly bytes: Counter<'fleet'>;
  private readonly results: Counter<'fleet' | 'model' | 'codec'>;
  private readonly errors: Counter<'fleet' | 'code'>;
  private readonly latency: Histogram<'fleet'>;

  constructor(
    private readonly edgeId: string,
    extra: { backlog: () => number; access: () => Record<string, number> },
  ) {
    const r = this.registry;
    r.setDefaultLabels({ edge: edgeId });
    collectDefaultMetrics({ register: r, prefix: 'splitfleet_edge_' });
    this.frames = new Counter({
      name: 'splitfleet_frames_total',
      help: 'Feature frames received',
      labelNames: ['fleet'],
      registers: [r],
    });
    this.bytes = new Counter({
      name: 'splitfleet_frame_bytes_total',
      help: 'Bytes of feature frames received',
      labelNames: ['fleet'],
      registers: [r],
    });
    this.results = new Counter({
      name: 'splitfleet_results_total',
      help: 'Results published',
      labelNames: ['fleet', 'model', 'codec'],
      registers: [r],
    });
    this.errors = new Counter({
      name: 'splitfleet_frame_errors_total',
      help: 'Frames answered with an error, by reason',
      labelNames: ['fleet', 'code'],
      registers: [r],
    });
    this.latency = new Histogram({
      name: 'splitfleet_edge_latency_seconds',
      help: 'Frame received -> result published, on the edge',
      labelNames: ['fleet'],
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2],
      registers: [r],
    });
    const devices = this.devices;
    new Gauge({
      name: 'splitfleet_devices_online',
      help: 'Devices whose last status is online',
      registers: [r],
      collect() {
        let n = 0;
        for (const t of devices.values()) if (t.view.online) n++;
        this.set(n);
      },
    });
    new Gauge({
      name: 'splitfleet_decoder_backlog',
      help: 'Frames queued for the decoder workers',
      registers: [r],
      collect() {
        this.set(extra.backlog());
      },
    });
    new Gauge({
      name: 'splitfleet_access_refused',
      help: 'Connects, publishes and subscriptions refused by the broker, by kind (since start)',
      labelNames: ['kind'],
      registers: [r],
      collect() {
        for (const [k, v] of Object.entries(extra.access())) this.set({ kind: k }, v);
      },
    });
  }

  private track(fleet: string, device: string): Track {
    const key = `${fleet}/${device}`;
    let t = this.devices.get(key);
    if (!t) {
      t = {
        view: { ...neverSeen(fleet, device), state: 'offline', inFleetFile: false },
        recent: [],
        latencies: [],
      };
      this.devices.set(key, t);
      // anyone who may publish a status could otherwise grow the table without bound: past
      // the cap, the device heard from least recently is forgotten (a device of the fleet
      // file still shows in the device table, as never seen until it is heard again)
      if (this.devices.size > MAX_TRACKED) {
        const oldest = this.devices.keys().next().value;
        if (oldest !== undefined) this.devices.delete(oldest);
      }
    } else {
      // the map stays in order of last activity
      this.devices.delete(key);
      this.devices.set(key, t);
    }
    return t;
  }

  /** A retained status (birth, clean death or last will). A death whose seq is older
   * than the birth in force is stale (a will of an earlier connection) and ignored. The
   * running settings come from births: a death keeps the last ones a birth reported (a
   * will carries the settings the device connected with, not what it ran since). */
  status(fleet: string, device: string, s: DeviceStatus): void {
    const t = this.track(fleet, device);
    const v = t.view;
    if (v.seq !== null && s.seq < v.seq) return;
    v.seq = s.seq;
    v.online = s.state === 'online';
    v.state = v.online ? 'online' : 'offline';
    const known = v.model !== null || v.configId !== null;
    if (v.online || !known) {
      v.model = s.model ?? v.model;
      v.codec = s.codec ?? v.codec;
      v.point = s.point ?? v.point;
      v.configId = s.configId ?? v.configId;
    }
    v.lastSeen = Math.max(v.lastSeen ?? 0, s.ts);
  }

  frame(fleet: string, device: string, bytes: number, now = Date.now()): void {
    const t = this.track(fleet, device);
    t.view.frames++;
    t.view.lastSeen = now;
    t.recent.push({ at: now, bytes });
    this.frames.inc({ fleet });
    this.bytes.inc({ fleet }, bytes);
  }

  result(
    fleet: string,
    device: string,
    model: string,
    codec: string,
    edgeMs: number,
    now = Date.now(),
  ): void {
    const t = this.track(fleet, device);
    t.view.results++;
    t.latencies.push({ at: now, ms: edgeMs });
    this.results.inc({ fleet, model, codec });
    this.latency.observe({ fleet }, edgeMs / 1000);
  }

  error(fleet: string, device: string, code: ErrorCode): void {
    const t = this.track(fleet, device);
    t.view.errors[code] = (t.view.errors[code] ?? 0) + 1;
    this.errors.inc({ fleet, code });
  }

  /** Every device seen, with rates over the last window. */
  snapshot(now = Date.now()): DeviceView[] {
    const out: DeviceView[] = [];
    for (const t of this.devices.values()) {
      t.recent = t.recent.filter((r) => now - r.at <= WINDOW_MS);
      t.latencies = t.latencies.filter((r) => now - r.at <= WINDOW_MS);
      const secs = WINDOW_MS / 1000;
      t.view.framesPerSecond = Math.round((t.recent.length / secs) * 100) / 100;
      t.view.bytesPerSecond = Math.round(t.recent.reduce((a, r) => a + r.bytes, 0) / secs);
      const l = t.latencies.map((r) => r.ms).sort((a, b) => a - b);
      t.view.edgeLatencyMsP50 = l.length
        ? Math.round(l[Math.floor(l.length / 2)]! * 100) / 100
        : null;
      out.push({ ...t.view, errors: { ...t.view.errors } });
    }
    return out.sort((a, b) => a.fleet.localeCompare(b.fleet) || a.device.localeCompare(b.device));
  }

  get id(): string {
    return this.edgeId;
  }
}

/** Every device of the fleet file (never seen, offline, online) and every other device
 * seen, with what the edge wants each to run, what it runs, and its last refusal. */
export function deviceTable(
  seen: readonly DeviceView[],
  fleet: string | null,
  fileDevices: readonly string[],
  configs: ReadonlyMap<string, DeviceConfigState>,
): DeviceView[] {
  const byKey = new Map(seen.map((v) => [`${v.fleet}/${v.device}`, { ...v }]));
  if (fleet !== null) {
    for (const device of fileDevices) {
      const key = `${fleet}/${device}`;
      if (!byKey.has(key)) byKey.set(key, { ...neverSeen(fleet, device) });
    }
  }
  const files = new Set(fileDevices);
  const out: DeviceView[] = [];
  for (const v of byKey.values()) {
    const mine = v.fleet === fleet && files.has(v.device);
    const st = mine ? configs.get(v.device) : undefined;
    const reported = v.configId !== null || v.model !== null;
    out.push({
      ...v,
      inFleetFile: mine,
      wanted: st
        ? {
            configId: st.wanted,
            group: st.group,
            settings: { ...st.settings },
            overridden: [...st.overridden],
          }
        : null,
      running:
        reported || st?.applied
          ? {
              configId: v.configId ?? st?.applied ?? null,
              model: v.model,
              codec: v.codec,
              point: v.point,
            }
          : null,
      refused: st?.refused ?? null,
      refusedConfigId: st?.refusedId ?? null,
    });
  }
  return out.sort((a, b) => a.fleet.localeCompare(b.fleet) || a.device.localeCompare(b.device));
}

function neverSeen(fleet: string, device: string): DeviceView {
  return {
    fleet,
    device,
    state: 'never seen',
    online: false,
    inFleetFile: true,
    wanted: null,
    running: null,
    refused: null,
    refusedConfigId: null,
    seq: null,
    model: null,
    codec: null,
    point: null,
    configId: null,
    framesPerSecond: 0,
    bytesPerSecond: 0,
    edgeLatencyMsP50: null,
    frames: 0,
    results: 0,
    errors: {},
    lastSeen: null,
  };
}

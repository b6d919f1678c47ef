/**
 * The fleet file's JSON Schema (draft-07), built here and written to
 * fleet-config/fleet.schema.json (`splitfleet fleet schema`) for editors: point the
 * YAML language server at it (`# yaml-language-server: $schema=./fleet.schema.json`)
 * and fields autocomplete with their titles and descriptions.
 *
 * A fleet file: `version`, the `fleet` id, `edge` (the serving edge's own settings),
 * `defaults` (every setting, with defaults),
 * `groups` (named partial settings) and `devices` (per device: a group and overrides).
 * A device's effective settings are defaults <- its group <- its own (effective.ts).
 */
import {
  BATCH_BOUNDS,
  SETTING_MAX_TOPK,
  WIRE_FORMATS,
  type DeviceSettings as ProtocolDeviceSettings,
} from '../core/wire/messages.js';
import { ID_PATTERN } from '../core/wire/topics.js';
import { ENGINE_NAMES } from '../core/engine/engine.js';
import { DEFAULT_MODEL } from '../core/model/ref.js';

/** The fleet id of every command that is given none and reads no fleet file (agent,
 * edge, worker, fleet ...). */
export const DEFAULT_FLEET = 'default';

/** The version this code reads and writes; older files are migrated (migrations.ts). */
export const FLEET_VERSION = 1;

/** One definition of the settings, shared with the config messages the edge sends. */
export type DeviceSettings = ProtocolDeviceSettings;

/** Settings of the edge that serves the fleet (not of its devices). */
export interface EdgeSettings {
  /** Publish each result in full (JSON on `.../result`) also for devices that take
   * compact answers; false where no dashboard or subscriber reads them. */
  fullResults: boolean;
}

export interface FleetFile {
  version: number;
  fleet: string;
  /** Always present once loaded (load.ts fills in the defaults). */
  edge: EdgeSettings;
  defaults: DeviceSettings;
  groups: Record<string, Partial<DeviceSettings>>;
  devices: Record<string, Partial<DeviceSettings> & { group?: string }>;
}

type JsonSchema = Record<string, unknown>;

const SETTINGS: Record<keyof DeviceSettings, JsonSchema> = {
  model: {
    title: 'Model',
    description: 'Model bundle from the zoo: a name ("resnet9w05-cifar10") or name@version.',
    type: 'string',
    pattern: '^[A-Za-z0-9_.-]{1,64}(@[0-9]{1,6})?$',
    default: DEFAULT_MODEL,
  },
  codec: {
    title: 'Codec',
    description:
      'Feature codec: split-fp32, split-fp16, split-q, jpeg, jpeg-scan, webp, png, or a learned codec (splitfleet, frankensplit, aecnn, bottlenetpp) whose bundle is in the zoo.',
    type: 'string',
    pattern: '^[a-z0-9-]{1,32}$',
    default: 'split-q',
  },
  point: {
    title: 'Operating point',
    description: "Index of the codec's operating point (0 = its first; `splitfleet models`).",
    type: 'integer',
    minimum: 0,
    maximum: 255,
    default: 0,
  },
  latencyGoalMs: {
    title: 'Latency goal (ms)',
    description:
      'End-to-end latency goal: the agent picks the most accurate point that meets it on its link. null: the fixed `point`.',
    type: ['number', 'null'],
    exclusiveMinimum: 0,
    maximum: 60000,
    default: null,
  },
  maxKbps: {
    title: 'Bit-rate cap (kbit/s)',
    description:
      "The edge's cap on the device's uplink: with a latency goal the agent never picks a point whose frames at its frame rate, with their MQTT/TCP/IP overhead, exceed this many kbit/s. null: no cap.",
    type: ['number', 'null'],
    exclusiveMinimum: 0,
    default: null,
  },
  fps: {
    title: 'Frames per second',
    description: 'Capture rate of the agent.',
    type: 'number',
    exclusiveMinimum: 0,
    maximum: 120,
    default: 5,
  },
  source: {
    title: 'Image source',
    description: '"sample" (the shipped sample), or a folder or .tar.gz path on the device.',
    type: 'string',
    minLength: 1,
    maxLength: 4096,
    default: 'sample',
  },
  credentials: {
    title: 'Credentials reference',
    description:
      "Name of the device's entry in the edge's credential store (never the secret itself). null: none.",
    type: ['string', 'null'],
    pattern: ID_PATTERN,
    default: null,
  },
  engine: {
    title: 'Inference engine',
    description:
      'Engine of the head on the device: onnx (onnxruntime-node), tfjs (tfjs-node when installed, else tfjs-wasm), tfjs-node, tfjs-wasm, or auto (the first that runs of onnx, tfjs-node, tfjs-wasm). An engine the device cannot run falls back along that order, logged.',
    enum: [...ENGINE_NAMES],
    default: 'auto',
  },
  wire: {
    title: 'Wire format',
    description:
      "v1: self-describing frames and full JSON results; v2: lean frames (a 6-byte header) in contexts the device announces, and compact answers (docs/PROTOCOL.md). The format is chosen when the agent starts: an agent running the other one refuses the config (restart it with --wire). null: the agent's own (--wire, default v1).",
    enum: [...WIRE_FORMATS, null],
    default: null,
  },
  batch: {
    title: 'Batching (wire v2)',
    description:
      'Several wire v2 frames per PUBLISH: at most maxFrames, none waiting more than maxDelayMs for the others. null: every frame alone.',
    type: ['object', 'null'],
    additionalProperties: false,
    required: ['maxFrames', 'maxDelayMs'],
    properties: {
      maxFrames: {
        title: 'Frames per PUBLISH at most',
        type: 'integer',
        minimum: BATCH_BOUNDS.minFrames,
        maximum: BATCH_BOUNDS.maxFrames,
      },
      maxDelayMs: {
        title: 'Longest wait of a frame for the others (ms)',
        type: 'number',
        minimum: 0,
        maximum: BATCH_BOUNDS.maxDelayMs,
      },
    },
    default: null,
  },
  topk: {
    title: 'Classes per answer (wire v2)',
    description: `Classes in each compact answer, best first (1..${SETTING_MAX_TOPK}).`,
    type: 'integer',
    minimum: 1,
    maximum: SETTING_MAX_TOPK,
    default: 1,
  },
};

function settings(withDefaults: boolean, extra: Record<string, JsonSchema> = {}): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const [k, v] of Object.entries(SETTINGS)) {
    const { default: d, ...rest } = v;
    properties[k] = withDefaults ? { ...rest, default: d } : rest;
  }
  return {
    type: 'object',
    additionalProperties: false,
    properties: { ...properties, ...extra },
    ...(withDefaults ? { default: {} } : {}),
  };
}

export function fleetSchema(): JsonSchema {
  const idMap = (title: string, description: string, value: JsonSchema): JsonSchema => ({
    title,
    description,
    type: 'object',
    propertyNames: { pattern: ID_PATTERN },
    additionalProperties: value,
    default: {},
  });
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'splitfleet fleet file',
    description:
      'Fleet defaults, groups and per-device overrides. A device runs defaults <- its group <- its own settings.',
    type: 'object',
    additionalProperties: false,
    required: ['version', 'fleet'],
    properties: {
      version: {
        title: 'File format version',
        description: `Format of this file; older versions are migrated on load. Current: ${FLEET_VERSION}.`,
        type: 'integer',
        minimum: 1,
      },
      fleet: {
        title: 'Fleet id',
        description: 'Fleet id, the topic segment <base>/<fleet>/...',
        type: 'string',
        pattern: ID_PATTERN,
      },
      edge: {
        title: 'Edge settings',
        description: 'Settings of the edge that serves this fleet (not of its devices).',
        type: 'object',
        additionalProperties: false,
        properties: {
          fullResults: {
            title: 'Full results',
            description:
              'Publish each result in full (JSON on <base>/<fleet>/device/<id>/result, ~460 B) for dashboards and subscribers, also for devices that take compact answers (wire v2). false: those devices get only their compact answers, where nothing reads the full ones. Devices on wire v1 always get full results. `splitfleet edge --no-full-results` turns them off whatever the file says.',
            type: 'boolean',
            default: true,
          },
        },
        default: {},
      },
      defaults: {
        title: 'Fleet defaults',
        description: 'Settings of every device unless its group or the device overrides them.',
        ...settings(true),
      },
      groups: idMap('Groups', 'Named sets of settings that devices join with `group`.', {
        ...settings(false),
        title: 'Group settings',
      }),
      devices: idMap(
        'Devices',
        'Every device of the fleet by id, with its group and its own overrides.',
        {
          ...settings(false, {
            group: { title: 'Group', description: 'A key of `groups`.', type: 'string' },
          }),
          title: 'Device settings',
        },
      ),
    },
  };
}

/** The edge settings of a checked fleet file's `edge` section (absent: the defaults). */
export function edgeSettings(section: unknown): EdgeSettings {
  const full: unknown =
    typeof section === 'object' && section !== null ? Reflect.get(section, 'fullResults') : true;
  return { fullResults: full !== false };
}

/** The settings keys, in schema order. */
export const SETTING_KEYS = Object.keys(SETTINGS) as (keyof DeviceSettings)[];

/** The schema's defaults for every setting. */
export function defaultSettings(): DeviceSettings {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(SETTINGS)) out[k] = v.default;
  return out as unknown as DeviceSettings;
}

/**
 * The edge's side of wire v2 sessions (core/wire/context.ts): per device, how it wants its
 * answers and the stream contexts it announced, each with the clock offset seen when it
 * came. Bounded: at most `maxContexts` contexts per device (the oldest announced goes
 * first; a frame naming it gets `unknown-context` and the device announces again) and at
 * most `maxDevices` devices (the least recently announced goes first).
 */
import type { AnswerMode, ContextAnnounce } from '../core/wire/context.js';
import type { StreamContext } from '../core/wire/frame-v2.js';

export const MAX_CONTEXTS_PER_DEVICE = 8;
export const MAX_WIRE_DEVICES = 100_000;

/** A context as the edge keeps it. */
export interface HeldContext extends StreamContext {
  /** Edge clock minus device clock when it was announced (ms, transit included). */
  offsetMs: number;
}

interface DeviceWire {
  answers: AnswerMode;
  topk: number;
  contexts: Map<number, HeldContext>;
  /** The device clock of its latest announce. */
  ts: number;
}

export class WireSessions {
  private readonly devices = new Map<string, DeviceWire>();

  constructor(
    private readonly maxContexts = MAX_CONTEXTS_PER_DEVICE,
    private readonly maxDevices = MAX_WIRE_DEVICES,
  ) {}

  /** Take an announce (already checked) of device `key` received at `now`. */
  announce(key: string, a: ContextAnnounce, now: number): void {
    let d = this.devices.get(key);
    this.devices.delete(key); // re-inserted last: the least recently announced is first
    d ??= { answers: a.answers, topk: a.topk, contexts: new Map(), ts: a.ts };
    d.answers = a.answers;
    d.topk = a.topk;
    d.ts = a.ts;
    this.devices.set(key, d);
    if (a.context) {
      d.contexts.delete(a.context.ctx);
      d.contexts.set(a.context.ctx, { ...a.context, offsetMs: now - a.ts });
      for (const id of d.contexts.keys()) {
        if (d.contexts.size <= this.maxContexts) break;
        d.contexts.delete(id);
      }
    }
    for (const k of this.devices.keys()) {
      if (this.devices.size <= this.maxDevices) break;
      this.devices.delete(k);
    }
  }

  /** The device began a connection at `ts` (its clock, from its birth): what it announced
   * before belongs to an earlier connection and is forgotten (a birth handed over after
   * the new connection's announce, which is later, leaves that one). */
  born(key: string, ts: number): void {
    const d = this.devices.get(key);
    if (d && d.ts <= ts) this.devices.delete(key);
  }

  context(key: string, ctx: number): HeldContext | undefined {
    return this.devices.get(key)?.contexts.get(ctx);
  }

  /** How the device wants its answers: absent when it never announced (a v1 agent). */
  mode(key: string): { answers: AnswerMode; topk: number } | undefined {
    const d = this.devices.get(key);
    return d && { answers: d.answers, topk: d.topk };
  }

  /** Devices and contexts held (for tests and metrics). */
  get size(): { devices: number; contexts: number } {
    let contexts = 0;
    for (const d of this.devices.values()) contexts += d.contexts.size;
    return { devices: this.devices.size, contexts };
  }
}

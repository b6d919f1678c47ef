/**
 * How the parts of an edge talk: a typed event bus (as zigbee2mqtt's extensions do), and
 * the start/stop contract every part follows.
 *
 * A part owns its state and its subscriptions; it tells the others what happened by an
 * event on the bus and learns what they did the same way. Events are delivered at once,
 * in the order listeners were added; a listener that throws is logged and the others
 * still run, so no part can break another's work.
 */
import type { FleetFile } from '../fleet-config/schema.js';
import { limitedLog, log } from '../core/util/log.js';
import type { ConfigAck, DeviceStatus, ErrorCode, ResultMessage } from '../core/wire/messages.js';
import type { Answer } from './answers.js';

/** Where a frame came from: one device of one fleet. */
export interface DeviceRef {
  fleet: string;
  deviceId: string;
}

export interface EdgeEvents {
  /** A feature frame from a device connected to this node, before any check. */
  frameReceived: DeviceRef & { bytes: number; at: number };
  /** This node answered a frame with a result (published right after the event). */
  result: DeviceRef & { result: ResultMessage };
  /** This node answered a frame with an error (refusals for overload included). */
  frameError: DeviceRef & { frameId: number | null; code: ErrorCode };
  /** Another node of a cluster answered a frame (a refusal for overload is no answer). */
  clusterAnswer: DeviceRef & { frameId: number; answer: Answer; result: ResultMessage | null };
  /** A device's retained status (birth, death or will), checked. */
  deviceStatus: DeviceRef & { status: DeviceStatus };
  /** A device answered a config: what it runs now and what it refused, if anything. */
  configAcked: DeviceRef & { ack: ConfigAck; error: string | null };
  /** A fleet file came into force and every device's config was published. */
  fleetApplied: { fleet: FleetFile };
}

export type EdgeEvent = keyof EdgeEvents;
type Listener<E extends EdgeEvent> = (e: EdgeEvents[E]) => void;

export class EdgeBus {
  private readonly listeners: { [E in EdgeEvent]?: Listener<E>[] } = {};

  /** Listen to an event; returns the function that stops listening. */
  on<E extends EdgeEvent>(event: E, fn: Listener<E>): () => void {
    const list: Listener<E>[] = (this.listeners[event] ??= []);
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  emit<E extends EdgeEvent>(event: E, e: EdgeEvents[E]): void {
    const list: Listener<E>[] | undefined = this.listeners[event];
    if (!list) return;
    for (const fn of [...list]) {
      try {
        fn(e);
      } catch (err) {
        limitedLog.warn(`bus:${event}`, { event, err: String(err) }, 'event listener failed');
      }
    }
  }
}

/** A part of the edge. `stop` is also called when its own `start` failed half-way, so it
 * undoes what was done and skips the rest; it never throws for what never started. */
export interface Part {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The parts of an edge in the order they started; `stop` stops them in the reverse order.
 * The one teardown path: used by a normal close and by a start that failed half-way.
 */
export class Parts {
  private readonly started: Part[] = [];

  /** Start a part. It is stopped with the others even when its start fails half-way:
   * the caller then calls stop(), the one teardown. */
  async start<P extends Part>(part: P): Promise<P> {
    this.started.push(part);
    await part.start();
    return part;
  }

  /** Stop every part, the last started first; a part that fails to stop is logged and
   * the others still stop. */
  async stop(): Promise<void> {
    for (let p = this.started.pop(); p; p = this.started.pop()) {
      try {
        await p.stop();
      } catch (e) {
        log.warn({ part: p.name, err: String(e) }, 'edge part did not stop cleanly');
      }
    }
  }
}

/** A part made of two functions (a listener, a timer). */
export function part(name: string, start: () => Promise<void>, stop: () => Promise<void>): Part {
  return { name, start, stop };
}

/**
 * The agent's typed event bus: its parts (session, uplink, config, capture, rate) tell one
 * another and the outside world what happened through it, and never reach into each
 * other's state. A listener that throws is logged (rate-limited) and never stops the
 * agent or the other listeners.
 */
import type { ErrorMessage, ResultMessage } from '../core/wire/messages.js';
import { limitedLog } from '../core/util/log.js';
import type { RateDecision } from './rate.js';
import type { AgentSettings } from './settings.js';

/** A frame the agent accepted for sending, and the sample it was made from. */
export interface FrameEvent {
  frameId: number;
  /** The sample's name in its source, and its position among the samples this agent took
   * (0-based). */
  sample: { name: string; index: number };
  /** Bytes of the whole frame (as the agent's wire format sends it in a steady stream:
   * wire v2, in its context) and of its codec payload. */
  frameBytes: number;
  payloadBytes: number;
  /** Time spent in the head network. */
  headMs: number;
}

/** A frame put on the wire (first send or re-send). */
export interface PublishedEvent {
  frameId: number;
  bytes: number;
  /** Monotonic time (performance.now()). */
  at: number;
}

/** A result for a frame in flight: what the rate controller learns from it. */
export interface AnsweredEvent {
  bytes: number;
  sentAt: number;
  at: number;
  latencyMs: number;
}

/** Every event of the agent, with its arguments. */
export interface AgentEventMap {
  /** A frame accepted for sending (the evaluation of a demo or bench joins on frameId). */
  frame: [FrameEvent];
  /** A result for one of this agent's frames, with its end-to-end latency. */
  result: [ResultMessage, number];
  /** An error from the edge (for a frame of this agent, or for the device). */
  error: [ErrorMessage];
  /** A frame given up: no answer in time (or the agent stopped at once). */
  lost: [number];
  /** A frame the outbox dropped (drop-oldest), with why. */
  dropped: [number, string];
  /** A source image that could not be encoded: skipped. */
  skipped: [string, string];
  /** Frames left by an earlier run, restored from the outbox at start. */
  restored: [number];
  published: [PublishedEvent];
  answered: [AnsweredEvent];
  /** The session is subscribed on connection number `conn`: frames may go. */
  online: [number];
  /** The connection is lost (or failed). */
  offline: [];
  reconnecting: [];
  /** The rate controller changed the operating point. */
  point: [RateDecision & { at: number }];
  /** A config of the edge was applied: the settings now in force. */
  configured: [Readonly<AgentSettings>];
  /** The settings changed (a config, or the rate controller's point). */
  settings: [Readonly<AgentSettings>];
}

export type AgentEvent = keyof AgentEventMap;
export type Listener<E extends AgentEvent> = (...args: AgentEventMap[E]) => void;

export class Bus {
  private readonly listeners: { [E in AgentEvent]?: Listener<E>[] } = {};

  constructor(private readonly name: string) {}

  on<E extends AgentEvent>(event: E, fn: Listener<E>): () => void {
    const list = (this.listeners[event] ??= []) as Listener<E>[];
    list.push(fn);
    return () => this.off(event, fn);
  }

  off<E extends AgentEvent>(event: E, fn: Listener<E>): void {
    const list = this.listeners[event] as Listener<E>[] | undefined;
    const i = list?.indexOf(fn) ?? -1;
    if (list && i >= 0) list.splice(i, 1);
  }

  emit<E extends AgentEvent>(event: E, ...args: AgentEventMap[E]): void {
    const list = this.listeners[event] as Listener<E>[] | undefined;
    if (!list) return;
    for (const fn of [...list]) {
      try {
        fn(...args);
      } catch (e) {
        limitedLog.warn(
          `listener:${this.name}:${event}`,
          { device: this.name, event, err: String(e).slice(0, 1024) },
          'event listener failed',
        );
      }
    }
  }
}

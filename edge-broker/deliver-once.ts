/**
 * Each packet reaches a client once, whatever order the broker's steps finish in.
 *
 * Aedes numbers each packet it publishes (`brokerCounter`, one count per broker) as the
 * publish starts, and its per-client duplicate check (meant for a client whose
 * subscriptions overlap: one packet, two matching filters) sends a packet only if its
 * number is above the last one the client was sent from that broker. But a publish takes
 * its steps before the packet is delivered, and a retained packet takes one more (its
 * store; with Redis, a round trip): a packet published just after it without that step
 * (an answer to a frame) is delivered first, and the client then drops the retained one
 * as already sent. A device lost its new config that way whenever an answer to one of its
 * frames was published while the config was being stored.
 *
 * The numbers cannot simply be given again at delivery: the persistence keys the packets
 * queued for a persistent session by them. So the check is replaced: each client
 * remembers the packets it was last sent (broker id and number) and drops only one it was
 * already sent, in any order.
 */
import type { Client } from 'aedes';

/** How many of its latest packets a client remembers (a packet's copies for overlapping
 * subscriptions are delivered one right after the other). */
const REMEMBERED = 256;

type Deliver = (packet: unknown, cb: () => void) => void;

interface Delivering {
  deliver0: Deliver;
  deliverQoS: Deliver;
  duplicates: Record<string, number>;
}

function isDelivering(c: unknown): c is Delivering {
  if (typeof c !== 'object' || c === null) return false;
  const d0: unknown = Reflect.get(c, 'deliver0');
  const dq: unknown = Reflect.get(c, 'deliverQoS');
  const dup: unknown = Reflect.get(c, 'duplicates');
  return typeof d0 === 'function' && typeof dq === 'function' && typeof dup === 'object';
}

/** Install the check on a client Aedes just made (before it reads its first packet). */
export function deliverOnce(client: Client): void {
  const c: unknown = client;
  if (!isDelivering(c)) throw new Error("Aedes' client has no deliver functions to guard");
  const sent = new Set<string>();
  const fresh = (packet: unknown): boolean => {
    if (typeof packet !== 'object' || packet === null) return true;
    const id: unknown = Reflect.get(packet, 'brokerId');
    if (typeof id !== 'string' || !id) return true; // not numbered (Aedes sends those as is)
    const key = `${id}:${String(Reflect.get(packet, 'brokerCounter'))}`;
    if (sent.has(key)) return false;
    sent.add(key);
    if (sent.size > REMEMBERED) sent.delete(sent.values().next().value!);
    // Aedes' own check passes: nothing it was sent counts as higher
    delete c.duplicates[id];
    return true;
  };
  const deliver0 = c.deliver0;
  const deliverQoS = c.deliverQoS;
  const once0: Deliver = (packet, cb) => {
    if (fresh(packet)) deliver0(packet, cb);
    else setImmediate(cb);
  };
  c.deliver0 = once0;
  c.deliverQoS = (packet, cb) => {
    // a packet published at QoS 0 goes to deliver0 (checked there, once)
    if (Reflect.get(packet as object, 'qos') === 0) once0(packet, cb);
    else if (fresh(packet)) deliverQoS(packet, cb);
    else setImmediate(cb);
  };
}

import test from 'ava';
import type { ContextAnnounce } from '../../core/wire/context.js';
import { WireSessions } from '../../edge-broker/contexts.js';

const announce = (id: number, ts: number, ctx?: number): ContextAnnounce => ({
  v: 1,
  id,
  ts,
  answers: 'compact',
  topk: 1,
  ...(ctx === undefined
    ? {}
    : {
        context: {
          ctx,
          modelId: 1,
          modelVersion: 1,
          codecId: 20,
          codecVersion: 1,
          point: 0,
          shape: [8, 4, 4],
          frameBase: 1000 * ctx,
        },
      }),
});

test('contexts per device are capped: the oldest announced goes first', (t) => {
  const s = new WireSessions(3, 10);
  for (let c = 0; c < 5; c++) s.announce('f/cam', announce(c, 100 + c, c), 200 + c);
  t.deepEqual(
    [0, 1, 2, 3, 4].map((c) => s.context('f/cam', c) !== undefined),
    [false, false, true, true, true],
  );
  // the clock offset of each context is taken as it arrives
  t.is(s.context('f/cam', 4)?.offsetMs, 100);
  t.deepEqual(s.size, { devices: 1, contexts: 3 });
});

test('devices held are capped: the least recently announced goes first', (t) => {
  const s = new WireSessions(8, 2);
  s.announce('f/a', announce(1, 1, 0), 1);
  s.announce('f/b', announce(1, 1, 0), 1);
  s.announce('f/a', announce(2, 2), 2); // a announced again: b is now the oldest
  s.announce('f/c', announce(1, 1, 0), 3);
  t.truthy(s.mode('f/a'));
  t.is(s.mode('f/b'), undefined);
  t.truthy(s.context('f/c', 0));
  t.deepEqual(s.size.devices, 2);
});

test('a birth newer than the announce ends the session; an older one, handed over late, does not', (t) => {
  const s = new WireSessions();
  s.announce('f/cam', announce(1, 5000, 0), 5000);
  s.born('f/cam', 4000); // the birth of this same connection, seen after its announce
  t.truthy(s.context('f/cam', 0));
  s.born('f/cam', 6000); // a new connection
  t.is(s.context('f/cam', 0), undefined);
  t.is(s.mode('f/cam'), undefined);
});

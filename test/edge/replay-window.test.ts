import test from 'ava';
import { AnswerCache, ReplayWindow } from '../../edge-broker/answers.js';

const answer = (n: number) => ({ topic: `t/${n}`, payload: Buffer.from([n]) });

/** Answers given at the times listed (ms), one frame each. */
function cacheWith(times: number[]): AnswerCache {
  const c = new AnswerCache(60_000, 1000);
  for (const at of times) {
    c.seen(`f/${at}`, at);
    c.answer(`f/${at}`, [answer(at)], at);
  }
  return c;
}

test('a replay covers the answers given from shortly before the loss', (t) => {
  const w = new ReplayWindow(2000);
  const c = cacheWith([1000, 7900, 8500, 10_000]);
  w.lost(10_000);
  const since = w.take(11_600);
  t.is(since, 8000);
  t.deepEqual(
    c.givenSince(since!).map((a) => a.topic),
    ['t/8500', 't/10000'],
  );
  t.is(w.take(12_000), null, 'nothing more until the next loss');
});

test('two losses before the replay goes out: one replay from the earlier window', (t) => {
  const w = new ReplayWindow(2000);
  w.lost(10_000);
  w.lost(10_800);
  t.is(w.take(12_000), 8000);
});

test('a loss right after a replay went out replays that replay too (it may have been lost)', (t) => {
  const w = new ReplayWindow(2000);
  // Redis restarts at 10 s: the replay at 11.6 s covers answers from 8 s
  w.lost(10_000);
  t.is(w.take(11_600), 8000);
  // it restarts again 0.4 s after that replay went out: the answers of the first
  // window (8-9.6 s) were published only in that replay, which may not have got through
  w.lost(12_000);
  const c = cacheWith([8500, 9000, 11_000, 11_900]);
  const since = w.take(13_500);
  t.is(since, 8000);
  t.deepEqual(
    c.givenSince(since!).map((a) => a.topic),
    ['t/8500', 't/9000', 't/11000', 't/11900'],
  );
  // a loss long after the last replay: its own window only
  w.lost(30_000);
  t.is(w.take(31_500), 28_000);
});

/** The log line formats (core/util/log.ts): which one, when colours, and a pretty line. */
import test from 'ava';
import { logFormat, prettyLine, useColour } from '../../core/util/log.js';

const tty = { isTTY: true };
const pipe = { isTTY: false };

test('pretty on a terminal, JSON in a pipe; SPLITFLEET_LOG_FORMAT chooses either', (t) => {
  t.is(logFormat({}, tty), 'pretty');
  t.is(logFormat({}, pipe), 'json');
  t.is(logFormat({ SPLITFLEET_LOG_FORMAT: 'json' }, tty), 'json');
  t.is(logFormat({ SPLITFLEET_LOG_FORMAT: 'pretty' }, pipe), 'pretty');
});

test('colours only on a terminal, never with NO_COLOR', (t) => {
  t.true(useColour({}, tty));
  t.false(useColour({}, pipe));
  t.false(useColour({ NO_COLOR: '1' }, tty));
  t.true(useColour({ NO_COLOR: '' }, tty), 'an empty NO_COLOR is unset');
});

test('a pretty line: local time, level name, message, rounded fields, the stack below', (t) => {
  const time = new Date(2026, 0, 2, 3, 4, 5, 67);
  const json = JSON.stringify({
    level: 'warn',
    time: time.toISOString(),
    from: '192.0.2.7',
    ms: 65.09400800000003,
    why: 'wrong user name or password',
    msg: 'login refused',
  });
  t.is(
    prettyLine(json),
    '03:04:05.067 WARN  login refused from=192.0.2.7 ms=65.09 why="wrong user name or password"\n',
  );
  const err = JSON.stringify({
    level: 'error',
    time: time.toISOString(),
    err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at f (x.ts:1:2)' },
    msg: 'failed',
  });
  t.is(prettyLine(err), '03:04:05.067 ERROR failed err="boom"\n    at f (x.ts:1:2)\n');
  t.is(prettyLine('not json'), 'not json\n', 'other lines pass through');
});

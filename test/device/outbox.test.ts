/**
 * The outbox's file format: frames carry no dataset label; files written by the earlier
 * format (no version, a `label` field) are still read and sent; files that are not an
 * outbox frame are removed, not sent.
 */
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Outbox } from '../../device-agent/outbox.js';

function file(header: unknown, frame: Buffer): Buffer {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(h.length, 0);
  return Buffer.concat([len, h, frame]);
}

const headerOf = (buf: Buffer): unknown =>
  JSON.parse(buf.subarray(4, 4 + buf.readUInt32LE(0)).toString('utf8'));

test('a frame is stored with a versioned header and no label', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-outbox-'));
  try {
    const { outbox } = await Outbox.open({ dir });
    await outbox.put({ frameId: 7, capturedAt: 1234, frame: Buffer.from([1, 2, 3]) });
    const [name] = await readdir(dir);
    const buf = await readFile(join(dir, name!));
    t.deepEqual(headerOf(buf), { v: 2, frameId: 7, capturedAt: 1234 });
    t.deepEqual([...buf.subarray(-3)], [1, 2, 3]);
    const { restored } = await Outbox.open({ dir });
    t.deepEqual(restored, [{ frameId: 7, capturedAt: 1234, frame: Buffer.from([1, 2, 3]) }]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('files of the earlier format are read (their label ignored); foreign ones removed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sf-outbox-'));
  try {
    const frame = Buffer.from([9, 8, 7, 6]);
    await writeFile(
      join(dir, '000000000000-42.frame'),
      file({ frameId: 42, capturedAt: 99, label: 3 }, frame),
    );
    await writeFile(
      join(dir, '000000000001-43.frame'),
      file({ frameId: 43, capturedAt: 100 }, frame),
    );
    await writeFile(join(dir, '000000000002-44.frame'), file({ v: 9, frameId: 44 }, frame));
    await writeFile(join(dir, '000000000003-45.frame'), file({ frameId: '45' }, frame));
    await writeFile(join(dir, '000000000004-46.frame'), Buffer.from([0xff, 0xff]));
    const { outbox, restored } = await Outbox.open({ dir });
    t.deepEqual(restored, [
      { frameId: 42, capturedAt: 99, frame },
      { frameId: 43, capturedAt: 100, frame },
    ]);
    t.is(outbox.size, 2);
    t.deepEqual((await readdir(dir)).sort(), ['000000000000-42.frame', '000000000001-43.frame']);
    // the next frame goes after them
    await outbox.put({ frameId: 50, capturedAt: 101, frame });
    t.true((await readdir(dir)).includes('000000000002-50.frame'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

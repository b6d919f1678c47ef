import test from 'ava';
import sharp from 'sharp';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageCodecs, jpegCodec, jpegScanCodec } from '../../core/codec/image.js';
import { CodecError } from '../../core/codec/types.js';
import { decodeImage } from '../../core/image/image.js';
import { SAMPLE_DIR } from '../../core/paths.js';

const sampleJpeg = () => readFile(join(SAMPLE_DIR, 'test', 'cat', '0000.jpg'));

test('every input codec point round-trips a 32x32 image', async (t) => {
  const stored = await sampleJpeg();
  const img = await decodeImage(stored);
  for (const c of imageCodecs) {
    for (const p of c.points) {
      const bytes = await c.encode(img, p.index, stored);
      t.true(bytes.byteLength > 0);
      const back = await c.decode(bytes, p.index);
      t.is(back.width, 32, `${c.name}/${p.label}`);
      t.is(back.height, 32);
      let err = 0;
      for (let i = 0; i < img.data.length; i++) err += Math.abs(img.data[i]! - back.data[i]!);
      t.true(
        err / img.data.length < 40,
        `${c.name}/${p.label} mean abs error ${err / img.data.length}`,
      );
    }
  }
});

test('jpeg-scan sends only the scan and decodes to the same pixels as the full file', async (t) => {
  const img = await decodeImage(await sampleJpeg());
  for (const p of jpegScanCodec.points) {
    const scan = await jpegScanCodec.encode(img, p.index);
    t.false(scan[0] === 0xff && scan[1] === 0xd8, 'no SOI: headers are not sent');
    const viaScan = await jpegScanCodec.decode(scan, p.index);
    // The same image as a whole baseline JPEG file, headers included.
    const file = await sharp(img.data, { raw: { width: 32, height: 32, channels: 3 } })
      .jpeg({
        quality: p.quality!,
        optimiseCoding: false,
        progressive: false,
        chromaSubsampling: '4:2:0',
      })
      .toBuffer();
    t.true(scan.byteLength < file.byteLength - 300, 'tables and headers stay home');
    t.deepEqual(viaScan.data, (await decodeImage(file)).data);
  }
});

test('undecodable image bytes raise CodecError', async (t) => {
  await t.throwsAsync(jpegCodec.decode(Uint8Array.of(1, 2, 3), 1), { instanceOf: CodecError });
  await t.throwsAsync(jpegScanCodec.decode(new Uint8Array(0), 2), { instanceOf: CodecError });
  await t.throwsAsync(jpegCodec.encode({ data: new Uint8Array(12), width: 2, height: 2 }, 0), {
    message: /stored file/,
  });
});

import test from 'ava';
import sharp from 'sharp';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageCodecs, jpegCodec, jpegScanCodec } from '../../core/codec/image.js';
import { CodecError } from '../../core/codec/types.js';
import { decodeImage, type RgbImage } from '../../core/image/image.js';
import { SAMPLE_DIR } from '../../core/paths.js';

const sampleJpeg = () => readFile(join(SAMPLE_DIR, 'test', 'cat', '0000.jpg'));

/** The sample image scaled to width x height (a camera-sized picture; upscaled). */
async function sampleAt(width: number, height: number): Promise<{ img: RgbImage; stored: Buffer }> {
  const stored = await sharp(await sampleJpeg())
    .resize(width, height, { fit: 'fill' })
    .jpeg({ quality: 90 })
    .toBuffer();
  return { img: await decodeImage(stored), stored };
}

const SIZES: [number, number][] = [
  [32, 32],
  [224, 224],
  [120, 90],
  [33, 17],
];

test('every input codec point round-trips pictures of any size', async (t) => {
  for (const [w, h] of SIZES) {
    const { img, stored } = await sampleAt(w, h);
    for (const c of imageCodecs) {
      for (const p of c.points) {
        const what = `${c.name}/${p.label} at ${w}x${h}`;
        const bytes = await c.encode(img, p.index, stored);
        t.true(bytes.byteLength > 0, what);
        const back = await c.decode(bytes, p.index);
        t.deepEqual([back.width, back.height], [w, h], what);
        let err = 0;
        for (let i = 0; i < img.data.length; i++) err += Math.abs(img.data[i]! - back.data[i]!);
        t.true(err / img.data.length < 40, `${what}: mean abs error ${err / img.data.length}`);
      }
    }
  }
});

test('jpeg-scan sends the size and the scan and decodes to the same pixels as the full file', async (t) => {
  for (const [w, h] of SIZES) {
    const { img } = await sampleAt(w, h);
    for (const p of jpegScanCodec.points) {
      const scan = await jpegScanCodec.encode(img, p.index);
      t.deepEqual([...scan.subarray(0, 4)], [w >> 8, w & 0xff, h >> 8, h & 0xff]);
      t.false(scan[4] === 0xff && scan[5] === 0xd8, 'no SOI: headers are not sent');
      const viaScan = await jpegScanCodec.decode(scan, p.index);
      // The same image as a whole baseline JPEG file, headers included.
      const file = await sharp(img.data, { raw: { width: w, height: h, channels: 3 } })
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
  }
});

test('jpeg-scan refuses sizes out of bounds and scans of another size', async (t) => {
  const { img } = await sampleAt(64, 48);
  const scan = await jpegScanCodec.encode(img, 1);
  const withSize = (w: number, h: number) => {
    const b = scan.slice();
    b.set([w >> 8, w & 0xff, h >> 8, h & 0xff]);
    return b;
  };
  for (const [w, h] of [
    [0, 48],
    [64, 0],
    [0xffff, 0xffff],
    [4097, 4096],
  ] as [number, number][]) {
    await t.throwsAsync(jpegScanCodec.decode(withSize(w, h), 1), {
      instanceOf: CodecError,
      message: /out of bounds/,
    });
  }
  // a scan under another size's header: an error, or a picture of the declared size
  const other = await jpegScanCodec.decode(withSize(32, 32), 1).catch((e: unknown) => e);
  t.true(
    other instanceof CodecError ||
      ((other as RgbImage).width === 32 && (other as RgbImage).height === 32),
  );
  await t.throwsAsync(jpegScanCodec.decode(scan.subarray(0, 4), 1), {
    instanceOf: CodecError,
    message: /too short/,
  });
  await t.throwsAsync(
    jpegScanCodec.encode({ data: new Uint8Array(3 * 5000 * 4000), width: 5000, height: 4000 }, 1),
    { instanceOf: CodecError, message: /too large/ },
  );
});

test('undecodable image bytes raise CodecError', async (t) => {
  await t.throwsAsync(jpegCodec.decode(Uint8Array.of(1, 2, 3), 1), { instanceOf: CodecError });
  await t.throwsAsync(jpegScanCodec.decode(new Uint8Array(0), 2), { instanceOf: CodecError });
  await t.throwsAsync(jpegCodec.encode({ data: new Uint8Array(12), width: 2, height: 2 }, 0), {
    message: /stored file/,
  });
});

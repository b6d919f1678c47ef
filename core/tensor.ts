/** A dense float32 tensor in row-major order. */
export interface Tensor {
  data: Float32Array;
  shape: number[];
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function tensor(data: Float32Array, shape: readonly number[]): Tensor {
  if (data.length !== numel(shape)) {
    throw new Error(
      `tensor data has ${data.length} elements, shape [${shape.join(',')}] needs ${numel(shape)}`,
    );
  }
  return { data, shape: [...shape] };
}

/** Copy `bytes` into a fresh, aligned ArrayBuffer (views from the network may be unaligned). */
export function alignedCopy(bytes: Uint8Array): ArrayBuffer {
  const buf = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buf).set(bytes);
  return buf;
}

/** Row `i` of a batched tensor (first axis), as a view. */
export function sliceBatch(t: Tensor, i: number): Tensor {
  const per = numel(t.shape.slice(1));
  return { data: t.data.subarray(i * per, (i + 1) * per), shape: t.shape.slice(1) };
}

/** Stack same-shaped tensors along a new first axis. */
export function stack(ts: readonly Tensor[]): Tensor {
  const first = ts[0];
  if (!first) throw new Error('stack of no tensors');
  const per = first.data.length;
  const out = new Float32Array(per * ts.length);
  ts.forEach((t, i) => {
    if (t.data.length !== per) throw new Error('stack of tensors with different sizes');
    out.set(t.data, i * per);
  });
  return { data: out, shape: [ts.length, ...first.shape] };
}

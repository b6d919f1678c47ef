"""Python reference of splitfleet's entropy coder (core/codec/rans.ts): byte-wise rANS
with 16-bit integer CDF tables, an escape symbol per table and 4-bit bypass chunks for
values outside a table's range. Pure integer arithmetic; the bytes it makes are the
bytes the TypeScript coder makes (golden fixtures in test/fixtures/rans check both).

Also the one place that turns a probability mass function into an integer CDF table
(`pmf_to_cdf`): the entropy models call it at export time, TypeScript only reads tables.

    /usr/bin/python3 -m splitfleet_models.rans --fixtures ../test/fixtures/rans
writes the golden fixtures (tables, values, bitstream) that both test suites check.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path
from typing import Callable, Sequence

PROB_BITS = 16
PROB_SCALE = 1 << PROB_BITS
PROB_MASK = PROB_SCALE - 1
RANS_L = 1 << 23
BYPASS_BITS = 4
BYPASS_FREQ = 1 << (PROB_BITS - BYPASS_BITS)
BYPASS_MAX_CHUNKS = 8
MAX_DISTANCE = 1 << 30
# stream layouts (core/codec/rans.ts): 1 starts at L and ends with the 4-byte state;
# 2 starts at 1 and flushes the state high byte first in as few bytes as hold it
STREAMS = (1, 2)
LATEST_STREAM = 2


def _rotation(t: Table, stream: int) -> int:
    """Stream 2 rotates a table's slots to start at its most probable symbol (the first
    of equals): a state below that symbol's frequency then codes it for nothing."""
    return 0 if stream == 1 else t.mode_start


def _start_state(stream: int) -> int:
    if stream not in STREAMS:
        raise RansError(f"stream layout {stream} is not one of {STREAMS}")
    return RANS_L if stream == 1 else 1


class RansError(ValueError):
    pass


class Table:
    """Values offset .. offset + len(cdf) - 3; the last symbol is the escape."""

    def __init__(self, offset: int, cdf: Sequence[int]):
        self.offset = int(offset)
        self.cdf = [int(c) for c in cdf]
        check_table(self)
        c = self.cdf
        self.mode_start = c[max(range(len(c) - 1), key=lambda k: (c[k + 1] - c[k], -k))]

    def to_json(self) -> dict:
        return {"offset": self.offset, "cdf": self.cdf}


def check_table(t: Table) -> None:
    c = t.cdf
    if len(c) < 3 or c[0] != 0 or c[-1] != PROB_SCALE:
        raise RansError("cdf must have >= 3 entries, start at 0 and end at 2^16")
    if any(b <= a for a, b in zip(c, c[1:])):
        raise RansError("cdf must be strictly increasing")


def pmf_to_cdf(pmf: Sequence[float], escape: float) -> list[int]:
    """Integer CDF for the symbols of `pmf` plus an escape symbol of mass `escape`.

    Every symbol gets at least frequency 1; the rest of the 2^16 is shared in
    proportion (floor), and what rounding leaves over goes to the most probable symbol.
    Deterministic for a given float input.
    """
    probs = [max(0.0, float(p)) for p in pmf] + [max(0.0, float(escape))]
    n = len(probs)
    if n < 2 or n > PROB_SCALE:
        raise RansError(f"{n} symbols: need 2..{PROB_SCALE}")
    total = sum(probs)
    if not math.isfinite(total) or total <= 0:
        raise RansError("pmf has no mass")
    spare = PROB_SCALE - n
    freq = [1 + int(math.floor(p / total * spare)) for p in probs]
    freq[max(range(n), key=lambda i: probs[i])] += PROB_SCALE - sum(freq)
    cdf = [0]
    for f in freq:
        cdf.append(cdf[-1] + f)
    return cdf


def encode(values: Sequence[int], tables: Sequence[Table], table_of: Callable[[int], int],
           stream: int = LATEST_STREAM) -> bytes:
    ops: list[tuple[int, int]] = []
    for i, v in enumerate(values):
        t = tables[table_of(i)]
        v = int(v)
        n = len(t.cdf) - 2
        idx = v - t.offset
        rot = _rotation(t, stream)
        if 0 <= idx < n:
            ops.append(((t.cdf[idx] - rot) & PROB_MASK, t.cdf[idx + 1] - t.cdf[idx]))
            continue
        if abs(idx) >= MAX_DISTANCE:
            raise RansError(f"element {i} = {v} is too far from the table range")
        ops.append(((t.cdf[n] - rot) & PROB_MASK, PROB_SCALE - t.cdf[n]))
        raw = -2 * idx - 1 if idx < 0 else 2 * (idx - n)
        chunks = 1
        while chunks < BYPASS_MAX_CHUNKS and raw >= 1 << (BYPASS_BITS * chunks):
            chunks += 1
        ops.append(((chunks - 1) * BYPASS_FREQ, BYPASS_FREQ))
        for c in range(chunks):
            ops.append((((raw >> (BYPASS_BITS * c)) & 0xF) * BYPASS_FREQ, BYPASS_FREQ))

    out = bytearray()  # emitted backwards, reversed at the end
    x = _start_state(stream)
    for start, freq in reversed(ops):
        x_max = ((RANS_L >> PROB_BITS) << 8) * freq
        while x >= x_max:
            out.append(x & 0xFF)
            x >>= 8
        x = ((x // freq) << PROB_BITS) + (x % freq) + start
    if stream == 1:
        out += bytes([(x >> 24) & 0xFF, (x >> 16) & 0xFF, (x >> 8) & 0xFF, x & 0xFF])
    else:
        while x > 0:  # high byte first (out is reversed below), as few bytes as hold it
            out.append(x & 0xFF)
            x >>= 8
    return bytes(reversed(out))


def decode(data: bytes, count: int, tables: Sequence[Table], table_of: Callable[[int], int],
           stream: int = LATEST_STREAM) -> list[int]:
    last = _start_state(stream)
    end = len(data)
    if stream == 1:
        if end < 4:
            raise RansError("stream is truncated")
        x = int.from_bytes(data[:4], "little")
        if not RANS_L <= x < RANS_L << 8:
            raise RansError("bad initial state")
        ptr = 4
    else:
        x = ptr = 0
        while x < RANS_L and ptr < end:
            x = (x << 8) | data[ptr]
            ptr += 1
        if x == 0:
            raise RansError("bad initial state")

    def get(start: int, freq: int, s: int) -> None:
        nonlocal x, ptr
        x = freq * (x >> PROB_BITS) + s - start
        while x < RANS_L:
            if ptr >= end:
                if stream == 2:  # every byte read: the state is back at the stream's start
                    return
                raise RansError("stream is truncated")
            x = (x << 8) | data[ptr]
            ptr += 1

    def bypass() -> int:
        s = x & PROB_MASK
        v = s // BYPASS_FREQ
        get(v * BYPASS_FREQ, BYPASS_FREQ, s)
        return v

    out = []
    for i in range(count):
        t = tables[table_of(i)]
        cdf = t.cdf
        n = len(cdf) - 2
        s = ((x & PROB_MASK) + _rotation(t, stream)) & PROB_MASK
        lo, hi = 0, len(cdf) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if cdf[mid] <= s:
                lo = mid
            else:
                hi = mid
        get(cdf[lo], cdf[lo + 1] - cdf[lo], s)
        if lo < n:
            out.append(t.offset + lo)
            continue
        chunks = bypass() + 1
        if chunks > BYPASS_MAX_CHUNKS:
            raise RansError("stream is corrupt (bypass length)")
        raw = 0
        for c in range(chunks):
            raw |= bypass() << (BYPASS_BITS * c)
        dist = -(raw + 1) // 2 if raw & 1 else raw // 2 + n
        if abs(dist) >= MAX_DISTANCE:
            raise RansError("stream is corrupt (bypass value)")
        out.append(t.offset + dist)
    if ptr != end:
        raise RansError(f"stream is corrupt: {end - ptr} bytes left over")
    if x != last:
        raise RansError("stream is corrupt: final state check failed")
    return out


def _laplace_table(offset: int, n: int, scale: float, escape: float = 1e-4) -> Table:
    pmf = [math.exp(-abs(offset + k) / scale) for k in range(n)]
    return Table(offset, pmf_to_cdf(pmf, escape))


def golden_cases(seed: int = 7) -> list[dict]:
    """Deterministic cases covering every branch: tiny and wide tables, skewed and flat
    distributions, escapes below and above the range, long bypass values, empty input;
    each in every stream layout (`stream`)."""
    rng = random.Random(seed)
    tables = [
        _laplace_table(-8, 17, 1.5),
        _laplace_table(-40, 81, 12.0),
        Table(0, pmf_to_cdf([1.0], 1e-3)),  # one symbol + escape
        Table(-3, pmf_to_cdf([1.0] * 7, 1.0)),  # flat, heavy escape
        _laplace_table(0, 256, 30.0, 1e-6),  # 8-bit codes (AECNN-style)
    ]
    cases = []

    def add(name: str, values: list[int], table_ids: list[int]) -> None:
        tj = [tables[i].to_json() for i in sorted(set(table_ids))] if table_ids else [tables[0].to_json()]
        remap = {t: k for k, t in enumerate(sorted(set(table_ids)))}
        idx = [remap[t] for t in table_ids]
        sel = [Table(t["offset"], t["cdf"]) for t in tj]
        for stream in STREAMS:
            data = encode(values, sel, lambda i: idx[i], stream)
            assert decode(data, len(values), sel, lambda i: idx[i], stream) == values
            cases.append(dict(name=name if stream == 1 else f"{name}/stream{stream}", stream=stream, tables=tj,
                              tableIndex=idx, values=values, bitstream=data.hex()))

    add("empty", [], [])
    add("single", [0], [0])
    vals = [max(-8, min(8, round(rng.gauss(0, 2)))) for _ in range(500)]
    add("laplace-in-range", vals, [0] * len(vals))
    vals = [round(rng.gauss(0, 30)) for _ in range(400)]
    add("escapes-both-sides", vals, [1] * len(vals))
    vals = [rng.choice([0, 0, 0, 1, -1, 5000, -70000, (1 << 29) + 3, -(1 << 29)]) for _ in range(200)]
    add("long-bypass", vals, [2] * len(vals))
    ids = [rng.randrange(5) for _ in range(1000)]
    vals = []
    for t in ids:
        tb = tables[t]
        n = len(tb.cdf) - 2
        vals.append(tb.offset + rng.randrange(-3, n + 3))
    add("mixed-tables", vals, ids)
    vals = [min(255, max(0, round(abs(rng.gauss(0, 30))))) for _ in range(2048)]
    add("eight-bit", vals, [4] * len(vals))
    return cases


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", required=True, help="folder for python.json")
    args = ap.parse_args(argv)
    out = Path(args.fixtures)
    out.mkdir(parents=True, exist_ok=True)
    doc = dict(
        maker="models/splitfleet_models/rans.py",
        probBits=PROB_BITS,
        cases=golden_cases(),
    )
    (out / "python.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {out / 'python.json'}: {len(doc['cases'])} cases")


if __name__ == "__main__":
    main()

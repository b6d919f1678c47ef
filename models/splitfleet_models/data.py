"""CIFAR-10 loaders.

Two input formats are accepted, both as an archive or unpacked:

* the ImageFolder layout (``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``) that
  ../shared/datasets/cifar10-jpeg.tar.gz uses;
* the official binary release (``cifar-10-binary.tar.gz`` or its unpacked
  ``cifar-10-batches-bin/`` folder: ``data_batch_1..5.bin``, ``test_batch.bin``).

Class indices follow the official label order, never file-system order.
Decoded images are cached as uint8 arrays (N, 32, 32, 3) in an ``.npz`` next to the
cache directory the caller names, so later runs skip JPEG decoding.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, 32, 32, 3), RGB
    labels: np.ndarray  # int64 (N,)
    names: list[str]  # relative path of each sample inside the source


def _decode_jpeg(raw: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(raw)) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.shape != (32, 32, 3):
        raise ValueError(f"expected a 32x32 RGB image, got {arr.shape}")
    return arr


def _folder_member(path: str) -> tuple[str, int] | None:
    """Map 'x/test/cat/0001.jpg' to ('test', 3); None for anything else."""
    parts = path.replace("\\", "/").split("/")
    if len(parts) < 3:
        return None
    split, cls, fname = parts[-3], parts[-2], parts[-1]
    if split not in ("train", "test") or cls not in CLASS_INDEX:
        return None
    if not fname.lower().endswith((".jpg", ".jpeg", ".png")):
        return None
    return split, CLASS_INDEX[cls]


def _collect(entries, want: set[str]) -> dict[str, Split]:
    buckets: dict[str, list[tuple[str, np.ndarray, int]]] = {s: [] for s in want}
    for name, read in entries:
        m = _folder_member(name)
        if m is None or m[0] not in want:
            continue
        buckets[m[0]].append((name, _decode_jpeg(read()), m[1]))
    out = {}
    for split, items in buckets.items():
        items.sort(key=lambda t: t[0])  # deterministic order whatever the archive order
        out[split] = Split(
            images=np.stack([t[1] for t in items]) if items else np.zeros((0, 32, 32, 3), np.uint8),
            labels=np.array([t[2] for t in items], dtype=np.int64),
            names=[t[0] for t in items],
        )
    return out


def _parse_binary_batch(raw: bytes, tag: str) -> Split:
    rec = 1 + 3 * 32 * 32
    if len(raw) % rec:
        raise ValueError(f"{tag}: size {len(raw)} is not a multiple of {rec}")
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    labels = arr[:, 0].astype(np.int64)
    if labels.max(initial=0) > 9:
        raise ValueError(f"{tag}: label out of range")
    images = arr[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return Split(images, labels, [f"{tag}#{i}" for i in range(len(labels))])


def _concat(parts: list[Split]) -> Split:
    return Split(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        sum((p.names for p in parts), []),
    )


def _load_binary(files: dict[str, bytes], want: set[str]) -> dict[str, Split]:
    out = {}
    if "train" in want:
        out["train"] = _concat(
            [_parse_binary_batch(files[f"data_batch_{i}.bin"], f"data_batch_{i}") for i in range(1, 6)]
        )
    if "test" in want:
        out["test"] = _parse_binary_batch(files["test_batch.bin"], "test_batch")
    return out


def _load_uncached(src: Path, want: set[str]) -> dict[str, Split]:
    if src.is_dir():
        if (src / "test_batch.bin").exists() or (src / "cifar-10-batches-bin").exists():
            d = src if (src / "test_batch.bin").exists() else src / "cifar-10-batches-bin"
            return _load_binary({p.name: p.read_bytes() for p in d.glob("*.bin")}, want)
        files = sorted(p for p in src.rglob("*") if p.is_file())
        return _collect(((str(p.relative_to(src)), p.read_bytes) for p in files), want)
    with tarfile.open(src, "r:*") as tf:
        members = [m for m in tf.getmembers() if m.isfile()]
        if any(m.name.endswith("test_batch.bin") for m in members):
            files = {
                os.path.basename(m.name): tf.extractfile(m).read()  # type: ignore[union-attr]
                for m in members
                if m.name.endswith(".bin")
            }
            return _load_binary(files, want)
        return _collect(
            ((m.name, (lambda m=m: tf.extractfile(m).read())) for m in members),  # type: ignore[union-attr]
            want,
        )


def _fingerprint(src: Path) -> str:
    st = src.stat()
    return hashlib.sha256(f"{src.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]


def load_cifar10(src: str | os.PathLike, splits=("train", "test"), cache_dir: str | None = None) -> dict[str, Split]:
    """Load the requested splits from an archive or folder in either supported format."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"CIFAR-10 source not found: {src}")
    want = set(splits)
    if cache_dir is None:
        return _load_uncached(src, want)
    cache = Path(cache_dir) / f"cifar10-{_fingerprint(src)}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if all(f"{s}_x" in z for s in want):
            return {s: Split(z[f"{s}_x"], z[f"{s}_y"], list(z[f"{s}_n"])) for s in want}
    data = _load_uncached(src, {"train", "test"})
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        **{f"{s}_x": d.images for s, d in data.items()},
        **{f"{s}_y": d.labels for s, d in data.items()},
        **{f"{s}_n": np.array(d.names) for s, d in data.items()},
    )
    tmp.replace(cache)
    return {s: data[s] for s in want}

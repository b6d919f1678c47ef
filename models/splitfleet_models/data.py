"""Data loaders: any ImageFolder (``load_images``) and CIFAR-10 (``load_cifar10``).

``load_images`` reads a user's ImageFolder, a folder or a ``.tar``/``.tar.gz``, with any
classes and images of any size, in one of two layouts:

* ``<root>/train/<class>/<image>`` and ``<root>/test/<class>/<image>`` (``val`` or
  ``validation`` count as ``test``);
* ``<root>/<class>/<image>``: every k-th image of each class (sorted by name) is held
  out for testing (``test_fraction``, default 0.2; at least one per class).

Images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.webp``, ``.ppm``, ``.tif``) are
decoded as RGB and brought to the training size by ``preprocess.fit`` (cover or
shorter-side resize, then center crop), stored as uint8. Class indices are the
sorted folder names (torchvision's ImageFolder order), CIFAR-10's official order when
the folders are exactly its ten classes, or the order of ``classes`` when given (the
labels of a model the data must match). Problems raise ``DataError`` naming them: no
images, a class folder without images, a class missing from one split, files that do
not decode, images outside class folders. A CIFAR-10 binary release is read too.

``load_cifar10`` is the original CIFAR-10 loader; two input formats, both as an archive
or unpacked:

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
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
SPLIT_NAMES = {"train": "train", "test": "test", "val": "test", "validation": "test"}


class DataError(ValueError):
    """A data set that cannot be used, with the reason in words."""

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


# -- any ImageFolder -------------------------------------------------------------------


@dataclass
class Dataset:
    train: Split
    test: Split
    classes: list[str]
    size: tuple[int, int]


def _is_image(path: str) -> bool:
    base = path.replace("\\", "/").split("/")[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


def _entries(src: Path):
    """(files: [(relative path, reader)], dirs: [relative path]) of a folder or archive."""
    if src.is_dir():
        files, dirs = [], []
        for p in sorted(src.rglob("*")):
            rel = str(p.relative_to(src)).replace("\\", "/")
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            if p.is_dir():
                dirs.append(rel)
            elif p.is_file():
                files.append((rel, p.read_bytes))
        return files, dirs
    try:
        tf = tarfile.open(src, "r:*")
    except tarfile.TarError as e:
        raise DataError(f"{src}: neither a folder nor a readable .tar/.tar.gz archive ({e})") from None
    files, dirs = [], []
    for m in tf.getmembers():
        name = m.name.lstrip("./") if m.name.startswith("./") else m.name
        if m.isdir():
            dirs.append(name.rstrip("/"))
        elif m.isfile():
            files.append((name, lambda m=m: tf.extractfile(m).read()))  # type: ignore[union-attr]
    return files, dirs


def _layout(src: Path, images: list[str], dirs: list[str], test_fraction: float):
    """{split: {class: [paths]}} of the image paths, checked."""
    parsed = []
    for path in images:
        parts = path.split("/")
        if len(parts) < 2:
            raise DataError(f"{src}: image {path} is not inside a class folder "
                            "(expected <root>/<class>/<image> or <root>/train/<class>/<image>)")
        split = SPLIT_NAMES.get(parts[-3].lower()) if len(parts) >= 3 else None
        parsed.append((path, split, parts[-2], "/".join(parts[:-2])))
    with_split = [p for p in parsed if p[1] is not None]
    if with_split and len(with_split) != len(parsed):
        odd = next(p[0] for p in parsed if p[1] is None)
        raise DataError(f"{src}: some images are under train/ or test/ and some are not (e.g. {odd}); "
                        "use one layout")
    parents = sorted({p[3] for p in parsed})
    if not with_split and len(parents) > 1:
        raise DataError(f"{src}: class folders under different parents ({', '.join(repr(x) for x in parents[:4])}); "
                        "expected <root>/<class>/<image>")
    # class folders without any image: directories beside the class folders
    image_dirs = {"/".join(p[0].split("/")[:-1]) for p in parsed}
    for d in dirs:
        parent = "/".join(d.split("/")[:-1])
        is_class_dir = (parent in parents) if not with_split else (
            len(d.split("/")) >= 2 and d.split("/")[-2].lower() in SPLIT_NAMES)
        if is_class_dir and d not in image_dirs and not any(x.startswith(d + "/") for x in image_dirs):
            raise DataError(f"{src}: class folder {d} has no images ({', '.join(IMAGE_SUFFIXES)})")
    out: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    if with_split:
        for path, split, cls, _ in parsed:
            out[split].setdefault(cls, []).append(path)
        for a, b in (("train", "test"), ("test", "train")):
            missing = sorted(set(out[a]) - set(out[b]))
            if missing:
                raise DataError(f"{src}: class {missing[0]!r} has images in {a}/ but none in {b}/")
        return out
    by_class: dict[str, list[str]] = {}
    for path, _, cls, _ in parsed:
        by_class.setdefault(cls, []).append(path)
    if not 0 < test_fraction < 1:
        raise DataError(f"test fraction {test_fraction}: must be between 0 and 1")
    k = max(2, round(1 / test_fraction))
    for cls, paths in by_class.items():
        paths.sort()
        if len(paths) < 2:
            raise DataError(f"{src}: class {cls!r} has {len(paths)} image; at least 2 are needed "
                            "(one to train on, one to test)")
        test = paths[k - 1 :: k] or paths[-1:]
        out["test"][cls] = test
        out["train"][cls] = [p for p in paths if p not in set(test)]
    return out


def _decode_any(raw: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(raw)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _fit_uint8(rgb: np.ndarray, size: tuple[int, int], resize: int | None) -> np.ndarray:
    from .preprocess import fit  # torch is imported only when images need it

    if rgb.shape[:2] == tuple(size) and resize is None:
        return rgb
    import torch

    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float()
    y = fit(x, size, resize)[0].permute(1, 2, 0)
    return y.round().clamp(0, 255).to(torch.uint8).numpy()


def _is_cifar_binary(src: Path) -> bool:
    if src.is_dir():
        return (src / "test_batch.bin").exists() or (src / "cifar-10-batches-bin").exists()
    if src.name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(src, "r:*") as tf:
                return any(n.endswith("test_batch.bin") for n in tf.getnames())
        except tarfile.TarError:
            return False
    return False


def load_images(
    src: str | os.PathLike,
    size: tuple[int, int] | None = None,
    resize: int | None = None,
    classes: list[str] | None = None,
    test_fraction: float = 0.2,
    cache_dir: str | None = None,
) -> Dataset:
    """Any ImageFolder (see the module doc) or a CIFAR-10 release, at `size` (H, W;
    default: the size of the first image) after an optional shorter-side `resize`."""
    src = Path(src)
    if not src.exists():
        raise DataError(f"data not found: {src}")
    key = json.dumps([_fingerprint(src), size, resize, classes, test_fraction])
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"images-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
        if cache.exists():
            z = np.load(cache, allow_pickle=False)
            sp = {s: Split(z[f"{s}_x"], z[f"{s}_y"], list(z[f"{s}_n"])) for s in ("train", "test")}
            return Dataset(sp["train"], sp["test"], [str(c) for c in z["classes"]], tuple(int(v) for v in z["size"]))
    ds = _load_images_uncached(src, size, resize, classes, test_fraction)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, classes=np.array(ds.classes), size=np.array(ds.size),
                 **{f"{s}_x": getattr(ds, s).images for s in ("train", "test")},
                 **{f"{s}_y": getattr(ds, s).labels for s in ("train", "test")},
                 **{f"{s}_n": np.array(getattr(ds, s).names) for s in ("train", "test")})
        tmp.replace(cache)
    return ds


def _load_images_uncached(src: Path, size, resize, classes, test_fraction) -> Dataset:
    if _is_cifar_binary(src):
        d = load_cifar10(src)
        size = tuple(size or (32, 32))
        for s in d.values():
            if s.images.shape[1:3] != size or resize is not None:
                s.images = np.stack([_fit_uint8(im, size, resize) for im in s.images]) if len(s.images) else \
                    np.zeros((0, *size, 3), np.uint8)
        if classes is not None and list(classes) != list(CLASSES):
            raise DataError(f"{src} is CIFAR-10; the model's labels are {classes}")
        return Dataset(d["train"], d["test"], list(CLASSES), size)
    files, dirs = _entries(src)
    images = [(n, r) for n, r in files if _is_image(n)]
    if not images:
        seen = ", ".join(n for n, _ in files[:3])
        raise DataError(f"no images found in {src}: expected <root>/<class>/<image> or "
                        f"<root>/train/<class>/<image> with {', '.join(IMAGE_SUFFIXES)} files "
                        f"(found {len(files)} other files{': ' + seen if seen else ''})")
    layout = _layout(src, [n for n, _ in images], dirs, test_fraction)
    found = sorted(set(layout["train"]) | set(layout["test"]))
    if classes is None:
        classes = list(CLASSES) if set(found) == set(CLASSES) else found
        if len(classes) < 2:
            raise DataError(f"{src}: one class folder ({found[0]!r}); a classifier needs at least 2")
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise DataError(f"{src}: class folder {extra[0]!r} is not one of the model's labels {list(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    readers = dict(images)
    bad: list[str] = []
    out = {}
    for split in ("train", "test"):
        items = sorted((p, index[c]) for c, ps in layout[split].items() for p in ps)
        arrays, labels, names = [], [], []
        for path, label in items:
            try:
                rgb = _decode_any(readers[path]())
            except Exception as e:  # PIL raises many types for broken files
                bad.append(f"{path} ({type(e).__name__}: {e})")
                continue
            if size is None:
                size = rgb.shape[:2]
            arrays.append(_fit_uint8(rgb, tuple(size), resize))
            labels.append(label)
            names.append(path)
        out[split] = Split(np.stack(arrays) if arrays else np.zeros((0, *(size or (1, 1)), 3), np.uint8),
                           np.array(labels, dtype=np.int64), names)
    if bad:
        raise DataError(f"{src}: {len(bad)} image file(s) could not be read: " + "; ".join(bad[:5])
                        + (" ..." if len(bad) > 5 else ""))
    return Dataset(out["train"], out["test"], list(classes), tuple(int(v) for v in size))

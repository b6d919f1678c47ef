"""Export trained learned codecs (train_codec.py) as one model bundle.

    /usr/bin/python3 -m splitfleet_models.export_codec --run runs/frankensplit-l0 --run runs/frankensplit-l1 \
        --name frankensplit-cifar10 --model-id 3 --version 1 \
        --data ../../shared/datasets/cifar10-jpeg.tar.gz --zoo zoo --fixtures ../test/fixtures

Each ``--run`` of BottleNet++ or FrankenSplit becomes one operating point (rate index =
order of the flags); an AECNN run becomes one point per k in its recipe, all sharing
one pair of networks. Per point the bundle holds ``head-<sha8>.onnx`` (device: image ->
integer symbols), ``tail-<sha8>.onnx`` (edge: symbols -> logits) and, for entropy-coded
methods, ``entropy-<sha8>.json`` (integer CDF tables, one per channel: FrankenSplit's
learned prior, AECNN's per-channel histograms of training-set symbols). The manifest
(format 2, kind "codec") lists the points with their symbol shape, channels sent,
multiply-accumulates on each side, measured top-1 and ideal bits per image on the test
split. With ``--fixtures``: PyTorch symbols, logits and rANS bitstreams of sample
images, for the TypeScript parity test.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from . import export_tfjs, rans
from .codecs import Half
from .data import DataError, load_images
from .entropy import histogram_tables, table_bits, tables_json
from .export import bundle_args, dataset_name, onnx_bytes, onnx_parity, sample_batch, sample_images, sha256, tfjs_or_note
from .nets import count_macs, describe
from .targets import file_sha256, validation_split
from .train_codec import VB_METHODS, build_codec, evaluate_codec, load_teacher, symbols_of

# Pinned codec ids (core/codec/registry.ts): never reuse, never renumber.
CODEC_IDS = {"bottlenetpp": 4, "aecnn": 5, "frankensplit": 6, "splitfleet": 7}
# the bitstream version a manifest records: the rANS stream layout its fixtures and
# figures were made with (rans.py; the TypeScript codecs read every layout)
CODEC_VERSION = rans.LATEST_STREAM


def load_run(run: str):
    """A run folder's final.pt, or a checkpoint file of a run (its best.pt: the epoch its
    validation split chose)."""
    p = Path(run)
    st = torch.load(p if p.is_file() else p / "final.pt", map_location="cpu")
    codec = build_codec(st["cfg"])
    codec.load_state_dict(st["model"])
    codec.eval()
    return codec, st["cfg"], dict(provenance=st.get("provenance"), selected=st.get("selected"))


def channel_of(shape) -> callable:
    hw = shape[1] * shape[2]
    return lambda i: i // hw


def encode_symbols(sym: np.ndarray, tables, keep: int) -> bytes:
    """One image's symbols (C, H, W), first `keep` channels, channel tables."""
    flat = sym[:keep].reshape(-1).tolist()
    return rans.encode(flat, tables, channel_of(sym.shape))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="codec run folder (final.pt); repeat for rate points")
    bundle_args(ap)
    ap.add_argument("--keep", metavar="BUNDLE",
                    help="an earlier bundle of the same method whose points come first, unchanged (files, tables, "
                         "measured figures and parity fixtures), so its point numbers keep their meaning")
    ap.add_argument("--table-images", type=int, default=10000, help="training images for AECNN histograms")
    args = ap.parse_args(argv)
    if not args.data:
        ap.error("--data (or SPLITFLEET_CIFAR10) is required: accuracy and tables are measured")
    torch.set_num_threads(2)
    loaded = [load_run(r) for r in args.run]
    runs = [(c, cfg) for c, cfg, _ in loaded]
    prep, labels = runs[0][0].prep, runs[0][0].labels
    if any(c.prep != prep or c.labels != labels for c, _ in runs):
        raise SystemExit("the runs' teachers differ in preprocessing or labels")
    try:
        ds = load_images(args.data, prep.size, prep.resize, classes=labels, cache_dir=args.cache)
    except DataError as e:
        raise SystemExit(f"data: {e}") from None
    tr, te = ds.train, ds.test
    # the validation split the runs chose on (the toolkit's default), measured beside
    # the test split's final numbers
    _, val_idx, val_hash = validation_split(len(tr.labels), int(runs[0][1].get("val", 5000)))
    val_x, val_y = tr.images[val_idx], tr.labels[val_idx]
    in_shape = (3, *prep.size)
    methods = {cfg["method"] for _, cfg in runs}
    if len(methods) != 1:
        raise SystemExit(f"one method per bundle, got {sorted(methods)}")
    method = methods.pop()
    if method == "aecnn" and (len(runs) != 1 or args.keep):
        raise SystemExit("AECNN: one run (its k values are the points)")

    out = Path(args.zoo) / f"{args.name}-v{args.version}"
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.onnx")) + list(out.glob("entropy-*.json")):
        old.unlink()
    files: dict[str, dict] = {}

    def put(role: str, stem: str, data_bytes: bytes, suffix: str, **extra) -> None:
        h = sha256(data_bytes)
        name = f"{stem}-{h[:8]}{suffix}"
        (out / name).write_bytes(data_bytes)
        files[role] = {"path": name, "sha256": h, **extra}

    points = []
    fixture_sets = []
    parities = []
    kept = keep_points(Path(args.keep), method, labels, prep, put, points, parities) if args.keep else None
    for ri, (codec, cfg) in enumerate(runs):
        with torch.no_grad():
            sym_shape = tuple(codec.device(torch.zeros(1, *in_shape)).shape[1:])
        tag = "" if len(runs) == 1 and kept is None else f".{len(points)}"
        dev_b, edge_b = onnx_bytes(Half(codec, "device"), in_shape), onnx_bytes(Half(codec, "edge"), sym_shape)
        put(f"head{tag}", "head", dev_b, ".onnx", input=[-1, *in_shape], output=[-1, *sym_shape])
        put(f"tail{tag}", "tail", edge_b, ".onnx", input=[-1, *sym_shape], output=[-1, len(labels)])
        # the device half's symbols are rounded: compare the edge half alone on integer
        # symbols, the device half on its pre-rounding features via the whole chain's logits
        parities.append(onnx_parity([(Half(codec, "edge"), edge_b, sym_shape)]))
        device_macs = count_macs(Half(codec, "device"), (1, *in_shape))
        edge_macs = count_macs(Half(codec, "edge"), (1, *sym_shape))
        tmacs = getattr(codec.teacher, "macs", None)
        if tmacs is not None:  # an ONNX teacher: its halves are not torch layers count_macs sees
            device_macs += tmacs[0] if method != "frankensplit" else 0
            edge_macs += tmacs[1]
        test_sym = symbols_of(codec, te.images)
        val_sym = symbols_of(codec, val_x) if len(val_y) else None
        tables = None
        if method in VB_METHODS:
            tables = codec.prior.tables()
        elif method == "aecnn":
            tables = histogram_tables(symbols_of(codec, tr.images[: args.table_images]), codec.levels + 1)
        if tables is not None:
            put(f"entropy{tag}", "entropy", (json.dumps(tables_json(tables), separators=(",", ":")) + "\n").encode(), ".json")
        ks = codec.ks if method == "aecnn" else [sym_shape[0]]
        for k in ks:
            top1 = evaluate_codec(codec, te.images, te.labels, k=k if method == "aecnn" else None)
            if tables is not None:
                ideal = table_bits(test_sym[:, :k], tables[:k]) / len(te.labels)
            else:
                ideal = 8.0 * k * sym_shape[1] * sym_shape[2]
            val_rec = {}
            if val_sym is not None:
                val_rec["valTop1"] = round(evaluate_codec(codec, val_x, val_y, k=k if method == "aecnn" else None), 4)
                if tables is not None:
                    val_rec["valBitsPerImage"] = round(table_bits(val_sym[:, :k], tables[:k]) / len(val_y), 1)
            label = {"aecnn": f"k={k}", "bottlenetpp": f"c={sym_shape[0]}"}.get(method, f"lam={cfg.get('lam')}")
            points.append(
                dict(
                    index=len(points),
                    label=label,
                    method=method,
                    head=f"head{tag}",
                    tail=f"tail{tag}",
                    entropy=f"entropy{tag}" if tables is not None else None,
                    symbolShape=list(sym_shape),
                    keep=k,
                    deviceMacs=device_macs,
                    edgeMacs=edge_macs,
                    top1=round(top1, 4),
                    bitsPerImage=round(ideal, 1),
                    **val_rec,
                )
            )
            print(json.dumps({"point": points[-1]["index"], "label": label, "top1": points[-1]["top1"],
                              "bitsPerImage": points[-1]["bitsPerImage"], **val_rec}), flush=True)
        fixture_sets.append((codec, tables, ks))

    codec0 = runs[0][0]
    tmacs = getattr(codec0.teacher, "macs", None)
    if tmacs is not None:
        teacher_desc, teacher_macs = f"onnx bundle {Path(runs[0][1]['teacher']).name}", sum(tmacs)
    else:
        teacher_net, tcfg = load_teacher(runs[0][1]["teacher"])
        teacher_desc, teacher_macs = describe(tcfg), count_macs(teacher_net, (1, *in_shape))
    with torch.no_grad():
        teacher_shape = list(codec0.teacher.head(torch.zeros(1, *in_shape)).shape[1:])
    manifest = {
        "format": 2,
        "kind": "codec",
        "name": args.name,
        "modelId": args.model_id,
        "version": args.version,
        "arch": f"{method} on {teacher_desc} at {codec0.teacher.point}",
        "dataset": dataset_name(labels, args.data),
        "labels": list(labels),
        "preprocessing": prep.manifest(),
        "codec": {
            "method": method,
            "id": CODEC_IDS[method],
            "version": CODEC_VERSION,
            "coding": "raw8" if method == "bottlenetpp" else "rans",
            "teacherPoint": codec0.teacher.point,
            "teacherShape": teacher_shape,
            "teacherMacs": teacher_macs,
            "points": points,
            "parity": {"edge": max(parities, key=lambda p: p["maxAbsDiff"])},
        },
        "files": files,
        "accuracy": {
            "top1": max(p["top1"] for p in points),
            "split": "test",
            "samples": len(te.labels),
            "source": os.path.basename(args.data),
            "sourceSha256": file_sha256(args.data),
            "engine": f"pytorch {torch.__version__}",
            "validation": {"split": "train", "samples": len(val_y), "indexSha256": val_hash},
        },
        # per run: its recipe and, for runs that record them, how it was made (seed,
        # data and validation split hashes, teacher bundle, commit, torch, device,
        # CPU/GPU minutes) and the epoch its validation split chose
        "training": {"runs": [cfg for _, cfg in runs],
                     **({"kept": {"bundle": kept["name"], "version": kept["version"],
                                  "manifestSha256": sha256((Path(kept["_dir"]) / "manifest.json").read_bytes()),
                                  "points": [p["label"] for p in kept["codec"]["points"]]}} if kept else {}),
                     **({"provenance": [x["provenance"] for *_, x in loaded],
                         "selected": [x["selected"] for *_, x in loaded]}
                        if any(x["provenance"] for *_, x in loaded) else {})},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    tfjs_or_note(out)
    print(json.dumps({"bundle": str(out), "points": len(points)}))

    if args.fixtures:
        write_fixtures(Path(args.fixtures) / f"{args.name}-v{args.version}", Path(args.sample), fixture_sets, method,
                       kept_cases=kept_fixture(Path(args.fixtures), kept) if kept else [],
                       prep=prep)


def keep_points(bundle: Path, method: str, labels, prep, put, points: list, parities: list) -> dict:
    """Copy `bundle`'s points (their files byte for byte, their measured figures) as the
    first points of the bundle being written; returns the kept bundle's manifest."""
    km = json.loads((bundle / "manifest.json").read_text())
    if km.get("kind") != "codec" or km["codec"]["method"] != method:
        raise SystemExit(f"--keep {bundle}: not a {method} bundle")
    if list(km["labels"]) != list(labels) or km["preprocessing"] != prep.manifest():
        raise SystemExit(f"--keep {bundle}: other labels or preprocessing than the runs")
    for p in km["codec"]["points"]:
        i = len(points)
        q = dict(p, index=i, head=f"head.{i}", tail=f"tail.{i}", entropy=f"entropy.{i}" if p["entropy"] else None)
        for old, new in ((p["head"], q["head"]), (p["tail"], q["tail"]), (p["entropy"], q["entropy"])):
            if old is None:
                continue
            f = km["files"][old]
            data_bytes = (bundle / f["path"]).read_bytes()
            if sha256(data_bytes) != f["sha256"]:
                raise SystemExit(f"{bundle / f['path']}: sha256 does not match the manifest")
            stem, suffix = ("entropy", ".json") if new.startswith("entropy") else (new.split(".")[0], ".onnx")
            put(new, stem, data_bytes, suffix, **{k: v for k, v in f.items() if k not in ("path", "sha256")})
        points.append(q)
    if km["codec"].get("parity", {}).get("edge"):
        parities.append(km["codec"]["parity"]["edge"])
    km["_dir"] = str(bundle)
    return km


def kept_fixture(fixtures: Path, km: dict) -> list:
    """The kept bundle's parity cases (its points are numbered the same in the new bundle)."""
    ref = fixtures / f"{km['name']}-v{km['version']}" / "reference.json"
    if not ref.exists():
        raise SystemExit(f"--keep: no parity fixture {ref} to carry over")
    return json.loads(ref.read_text())["cases"]


def write_fixtures(dst: Path, sample: Path, sets, method: str, n: int = 4, prep=None, kept_cases=()) -> None:
    """Per point: PyTorch symbols, the rANS (or raw) payload and logits of a few sample images."""
    from .preprocess import Preprocessing

    imgs = sample_images(sample, n)
    _, x = sample_batch(imgs, prep or Preprocessing())
    cases = list(kept_cases)
    point = len({c["point"] for c in cases})  # the points were numbered in this same order, kept ones first
    with torch.no_grad():
        for si, (codec, tables, ks) in enumerate(sets):
            sym = codec.device(x)
            for k in ks:
                point += 1
                s_k = sym.clone()
                s_k[:, k:] = -1
                logits = codec.edge(s_k).numpy()
                for j in range(len(imgs)):
                    s = sym[j].numpy().astype(np.int64)
                    payload = (
                        encode_symbols(s, tables, k) if tables is not None else bytes(s[:k].reshape(-1).astype(np.uint8))
                    )
                    cases.append(dict(point=point - 1, keep=k, image=str(imgs[j].relative_to(sample)),
                                      stream=CODEC_VERSION, symbols=s[:k].reshape(-1).tolist(), payload=payload.hex(),
                                      logits=[float(v) for v in logits[j]]))
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "reference.json").write_text(json.dumps({"method": method, "engine": f"pytorch {torch.__version__}",
                                                    "cases": cases}) + "\n")
    print(json.dumps({"fixtures": str(dst), "cases": len(cases)}))


if __name__ == "__main__":
    main()

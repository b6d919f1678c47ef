"""Train many codec runs at once on one accelerator inside a fixed time budget.

    python3 -m splitfleet_models.sweep --plan recipes/codecs-gpu.yaml --data <cifar10 archive> \\
        --device cuda --budget 380 --pack /tmp/out

The plan lists runs (`name`, `recipe`, extra `train_codec` arguments, and optionally the
`scale` an earlier sweep chose: then nothing is probed and that sweep is reproduced). All
runs share the device and train concurrently, one process each. First every run times a few training
steps of its first stage with all the others probing beside it (`train_codec
--probe-steps`); from that step time each run gets one `--epochs-scale` so that its
stages fill `--budget` seconds (a joint stage, which also trains the tail, is counted
`joint_cost` times a first-stage step). The scales are written to `<runs>/sweep.json`,
and every run's `train.log` records the epochs it trained, so the runs reproduce with
the same command on any machine: `train_codec --recipe R --epochs-scale S`.

``--pack DIR`` writes the finished runs as few archives (the accelerator lends a
limited number of files back), each run's final.pt without the tensors it shares
unchanged with the teacher (they come back from the teacher run); ``unpack`` restores
full final.pt files:

    python3 -m splitfleet_models.sweep --unpack DIR --runs runs
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .data import load_cifar10

PY = sys.executable


def _train_args(run: dict, data: str, cache: str, device: str, out: Path) -> list[str]:
    return [PY, "-m", "splitfleet_models.train_codec", "--data", data, "--cache", cache, "--device", device,
            "--recipe", run["recipe"], "--out", str(out), *[str(a) for a in run.get("args", [])]]


def _stage_cost(recipe: dict, joint_cost: float) -> float:
    return sum(float(s["epochs"]) * (joint_cost if s["name"] == "joint" else 1.0) for s in recipe["stages"])


def probe_all(plan: list[dict], data: str, cache: str, device: str, runs: Path, steps: int) -> dict[str, dict]:
    # probes log into a folder of their own: the run folders start clean
    procs = {r["name"]: subprocess.Popen(_train_args(r, data, cache, device, runs / ".probe" / r["name"])
                                         + ["--probe-steps", str(steps)],
                                         stdout=subprocess.PIPE, text=True) for r in plan}
    out = {}
    for name, p in procs.items():
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"probe of {name} failed ({p.returncode})")
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    return out


def plan_scales(plan: list[dict], probes: dict[str, dict], budget: float, joint_cost: float) -> dict[str, float]:
    scales = {}
    for r in plan:
        recipe = yaml.safe_load(Path(r["recipe"]).read_text())
        pr = probes[r["name"]]
        epoch_s = pr["step_seconds"] * pr["steps_per_epoch"]
        scales[r["name"]] = round(budget / (epoch_s * _stage_cost(recipe, joint_cost)), 2)
    return scales


def train_all(plan, scales, data, cache, device, runs: Path, deadline: float) -> dict[str, int | None]:
    procs, logs = {}, []
    for r in plan:
        logs.append(open(runs / f"{r['name']}.out", "w"))
        procs[r["name"]] = subprocess.Popen(
            _train_args(r, data, cache, device, runs / r["name"]) + ["--epochs-scale", str(scales[r["name"]])],
            stdout=logs[-1], stderr=subprocess.STDOUT)
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        time.sleep(2)
    for p in procs.values():
        if p.poll() is None:
            p.kill()  # past the deadline: its last.pt (every epoch) stays for a resume
    codes = {n: p.wait() for n, p in procs.items()}
    for f in logs:
        f.close()
    return codes


def _stripped(run: Path) -> dict | None:
    """final.pt (or, for an unfinished run, the weights of last.pt) without the tensors
    equal to a freshly built codec's (the frozen teacher parts)."""
    from .train_codec import build_codec

    f = run / "final.pt"
    finished = f.exists()
    if not finished and not (run / "last.pt").exists():
        return None
    st = torch.load(f if finished else run / "last.pt", map_location="cpu", weights_only=False)  # our own file
    ref = build_codec(st["cfg"]).state_dict()
    model = {k: v for k, v in st["model"].items() if not (k.startswith("teacher.") and torch.equal(v, ref[k]))}
    return dict(model=model, cfg=st["cfg"], finished=finished, pos=st.get("pos"))


def pack(runs: Path, names: list[str], dst: Path, cap: int = 15 << 20) -> list[str]:
    """Archives of at most `cap` bytes: every run's stripped weights and its logs."""
    dst.mkdir(parents=True, exist_ok=True)
    written, buf, size, part = [], None, 0, 0

    def close():
        nonlocal buf, part
        if buf is not None:
            buf.close()
            buf = None
            part += 1

    for name in names:
        blobs = {}
        st = _stripped(runs / name)
        if st is not None:
            # numpy + JSON rather than torch.save: readable by any torch version
            b = io.BytesIO()
            np.savez(b, **{k: v.numpy() for k, v in st["model"].items()})
            blobs[f"{name}/weights.npz"] = b.getvalue()
            meta = dict(cfg=st["cfg"], finished=st["finished"], pos=st["pos"])
            blobs[f"{name}/meta.json"] = json.dumps(meta).encode()
        for extra in ("train.log",):
            if (runs / name / extra).exists():
                blobs[f"{name}/{extra}"] = (runs / name / extra).read_bytes()
        if (runs / f"{name}.out").exists():
            blobs[f"{name}/stdout.log"] = (runs / f"{name}.out").read_bytes()
        n = sum(len(v) for v in blobs.values())
        if buf is None or size + n > cap:
            close()
            path = dst / f"runs-{part}.tar"
            buf = tarfile.open(path, "w")
            written.append(path.name)
            size = 0
        for k, v in blobs.items():
            ti = tarfile.TarInfo(k)
            ti.size = len(v)
            buf.addfile(ti, io.BytesIO(v))
        size += n
    close()
    return written


def unpack(src: Path, runs: Path) -> None:
    from .train import save_atomic
    from .train_codec import build_codec

    for tar in sorted(src.glob("runs-*.tar")):
        got: dict[str, dict] = {}
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                name, _, fname = m.name.partition("/")
                data = t.extractfile(m).read()
                if fname in ("weights.npz", "meta.json"):
                    got.setdefault(name, {})[fname] = data
                    continue
                (runs / name).mkdir(parents=True, exist_ok=True)
                (runs / name / fname).write_bytes(data)
        for name, parts in got.items():
            meta = json.loads(parts["meta.json"])
            arrays = np.load(io.BytesIO(parts["weights.npz"]), allow_pickle=False)
            full = build_codec(meta["cfg"]).state_dict()
            full.update({k: torch.from_numpy(arrays[k].copy()) for k in arrays.files})
            target = "final.pt" if meta["finished"] else "partial.pt"
            (runs / name).mkdir(parents=True, exist_ok=True)
            save_atomic(dict(model=full, cfg=meta["cfg"]), runs / name / target)
            print(json.dumps(dict(run=name, wrote=target, pos=meta["pos"])))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", help="YAML: runs: [{name, recipe, args}], common: [args for every run]")
    ap.add_argument("--data", default=os.environ.get("SPLITFLEET_CIFAR10"))
    ap.add_argument("--cache", default="../.cache")
    ap.add_argument("--runs", default="runs", help="folder of the run folders")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=380.0, help="seconds of training per run")
    ap.add_argument("--deadline", type=float, default=0.0,
                    help="kill runs still going after this many seconds (default: 1.3 x budget when probing, "
                         "none for a plan with recorded scales); a killed run resumes from its last.pt")
    ap.add_argument("--probe-steps", type=int, default=30)
    ap.add_argument("--joint-cost", type=float, default=1.5)
    ap.add_argument("--reprobe", action="store_true", help="probe and size the runs even where the plan records scales")
    ap.add_argument("--pack", help="write the finished runs as archives into this folder")
    ap.add_argument("--unpack", help="restore runs from the archives in this folder")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    if args.unpack:
        unpack(Path(args.unpack), runs)
        return
    if not (args.plan and args.data):
        ap.error("--plan and --data are required")
    doc = yaml.safe_load(Path(args.plan).read_text())
    plan = [dict(r, args=[*doc.get("common", []), *r.get("args", [])]) for r in doc["runs"]]
    runs.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    load_cifar10(args.data, cache_dir=args.cache)  # decode once, before the runs share the cache
    if all("scale" in r for r in plan) and not args.reprobe:
        # a plan that records its scales (from an earlier sweep) reproduces that sweep
        probes, scales = None, {r["name"]: float(r["scale"]) for r in plan}
    else:
        probes = probe_all(plan, args.data, args.cache, args.device, runs, args.probe_steps)
        scales = plan_scales(plan, probes, args.budget, args.joint_cost)
    info = dict(device=args.device, budget=args.budget, joint_cost=args.joint_cost, probes=probes, scales=scales,
                torch=torch.__version__, gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    (runs / "sweep.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(dict(prepared_s=round(time.time() - t0, 1), scales=scales)), flush=True)
    # a probed sweep stops at 1.3x its budget unless told; a recorded plan runs to the end
    limit = args.deadline or (args.budget * 1.3 if probes is not None else float("inf"))
    deadline = time.time() + limit
    codes = train_all(plan, scales, args.data, args.cache, args.device, runs, deadline)
    print(json.dumps(dict(exit_codes=codes, total_s=round(time.time() - t0, 1))), flush=True)
    if args.pack:
        print(json.dumps(dict(packed=pack(runs, [r["name"] for r in plan], Path(args.pack)))), flush=True)


if __name__ == "__main__":
    main()

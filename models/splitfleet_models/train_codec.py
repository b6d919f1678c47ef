"""Train a learned feature codec (codecs.py) around a trained backbone, stage by stage.

    /usr/bin/python3 -m splitfleet_models.train_codec --data ../../shared/datasets/cifar10-jpeg.tar.gz \
        --recipe recipes/frankensplit-l0.yaml --out runs/frankensplit-l0

The recipe names the method, the teacher (a run folder with final.pt from train.py, or a
backbone bundle folder with manifest.json: an imported ONNX model, whose head and tail
run through onnx_torch.py; its split tensor is the codec's teacher point), the
method's shape parameters and a list of stages; each stage has its own epochs, learning
rate and loss weights. A recipe key ``init`` (a run folder) starts from that run's
trained codec instead of from scratch: the FrankenSplit rate points after the first are
fine-tuned from their neighbour this way. Resumable like train.py: ``<out>/last.pt`` after every epoch
(stage, epoch, weights, optimizer, RNG), one JSON line per epoch in ``<out>/train.log``.
Stages:

* ``attention`` (AECNN): channel attention on the frozen backbone, cross-entropy plus an
  L1 push on the weights; at its end the channels are ranked by mean attention.
* ``codec``: encoder and decoder with the backbone frozen. BottleNet++ and AECNN:
  `ce` x cross-entropy through the frozen tail plus `mse` x feature error relative to
  the split tensor's power (AECNN samples k per batch: nested dropout over its
  operating points). FrankenSplit: saliency-weighted distortion of the restored
  teacher tensor, relative to its power, + `lam` x bits per pixel (+ `kd` x
  distillation of the teacher's logits).
* ``joint``: the same loss with the tail trainable too (a short fine-tune).

Loss weights may be set per stage (a stage's keys override the recipe's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from .codec_val import ValSet, better, spent_minutes, target_cache, teacher_top1, val_metrics, warm_start
from .codecs import AECNN, BottleNetPP, FrankenSplit, FrozenTeacher, SplitFleet
from .data import DataError, load_images
from .entropy import bits
from .nets import build
from .preprocess import Preprocessing
from .targets import VAL_SIZE, FrozenTargets, TargetCache, code_commit, file_sha256, teacher_source, validation_split
from .train import augment, labels_of, load_resume, prep_of, run_logger, save_atomic, set_seed
from .widen import widen_state

METHODS = ("bottlenetpp", "aecnn", "frankensplit", "splitfleet")
# variational-bottleneck methods: distortion of the teacher tensor + lam x rate
VB_METHODS = ("frankensplit", "splitfleet")


def load_recipe(path: str | None, overrides: dict) -> dict:
    cfg = dict(batch=128, seed=1, threads=2, autocast="none", cutout=0, saliency=0.5, kd=0.0, mse=1.0, ce=1.0, l1=0.0,
               val=VAL_SIZE, ste=False, teacher_cache=0, channels_last=False)
    if path:
        cfg.update(yaml.safe_load(Path(path).read_text()) or {})
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if cfg.get("method") not in METHODS:
        raise SystemExit(f"recipe method must be one of {METHODS}")
    if not cfg.get("stages"):
        raise SystemExit("recipe has no stages")
    return cfg


def load_teacher(run: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    st = torch.load(Path(run) / "final.pt", map_location="cpu")
    net = build(st["cfg"]["arch"], float(st["cfg"]["width"]), classes=len(labels_of(st)))
    net.load_state_dict(st["model"])
    net.eval()
    return net, st["cfg"]


def teacher_meta(teacher: str | os.PathLike) -> tuple[list[str], Preprocessing, dict | None]:
    """The labels and preprocessing of a teacher (run folder or bundle folder), and the
    bundle's manifest for a bundle."""
    t = Path(teacher)
    if (t / "manifest.json").exists() and not (t / "final.pt").exists():
        m = json.loads((t / "manifest.json").read_text())
        if m.get("kind") != "backbone":
            raise SystemExit(f"teacher {t}: a {m.get('kind')} bundle, not a backbone")
        return list(m["labels"]), Preprocessing.from_manifest(m["preprocessing"]), m
    if not (t / "final.pt").exists():
        raise SystemExit(f"teacher {t}: neither a training run (final.pt) nor a bundle (manifest.json)")
    st = torch.load(t / "final.pt", map_location="cpu")
    return labels_of(st), prep_of(st["cfg"]), None


def onnx_teacher(bundle: Path, manifest: dict) -> FrozenTeacher:
    """The bundle's head and tail, run by the ONNX interpreter; the tail's weights are
    parameters, so a joint stage can fine-tune it."""
    import hashlib

    import onnx

    from .onnx_torch import OnnxModule

    halves = {}
    for role in ("head", "tail"):
        f = manifest["files"][role]
        b = (bundle / f["path"]).read_bytes()
        if hashlib.sha256(b).hexdigest() != f["sha256"]:
            raise SystemExit(f"{bundle / f['path']}: sha256 does not match the manifest")
        halves[role] = OnnxModule(onnx.load_from_string(b), trainable=False)
    t = FrozenTeacher(None, manifest["split"]["point"], head=halves["head"], tail=halves["tail"])
    t.macs = (int(manifest["split"]["headMacs"]), int(manifest["split"]["tailMacs"]))
    return t


def build_codec(cfg: dict, teacher_run: str | os.PathLike | None = None) -> torch.nn.Module:
    src = teacher_run or cfg["teacher"]
    labels, prep, manifest = teacher_meta(src)
    if manifest is not None:
        teacher = onnx_teacher(Path(src), manifest)
    else:
        net, _ = load_teacher(src)
        teacher = FrozenTeacher(net, cfg["point"])
    with torch.no_grad():
        shape = teacher.head(torch.zeros(1, 3, *prep.size)).shape[1:]
    m = cfg["method"]
    if len(shape) != 3:
        raise SystemExit(f"the teacher's split tensor has shape {list(shape)}; learned codecs need C x H x W")
    if m == "bottlenetpp":
        codec = BottleNetPP(teacher, shape[0], int(cfg["channels"]))
    elif m == "aecnn":
        codec = AECNN(teacher, shape[0], int(cfg["kmax"]), int(cfg["bits"]), list(cfg["ks"]))
    elif m == "splitfleet":
        if shape[1] % 2 or shape[2] % 2:
            raise SystemExit(f"SplitFleet halves the split tensor's height and width: {shape[1]}x{shape[2]} is odd; "
                             "choose another split point or input size")
        codec = SplitFleet(teacher, shape[0], int(cfg["latent"]), int(cfg["hidden"]), int(cfg["decoder"]))
    else:
        down, rem = divmod(prep.size[0], shape[1])
        if rem or prep.size[1] != down * shape[2]:
            raise SystemExit(f"FrankenSplit: the split tensor ({shape[1]}x{shape[2]}) is not the input "
                             f"({prep.size[0]}x{prep.size[1]}) downsampled by 2, 4 or 8")
        codec = FrankenSplit(
            teacher, shape[0], down, int(cfg["latent"]), int(cfg["hidden"]), cfg.get("decoder") and int(cfg["decoder"])
        )
    codec.teacher.eval()
    codec.prep = prep
    codec.labels = labels
    return codec


def set_mode(codec: torch.nn.Module, stage: dict) -> list[torch.nn.Parameter]:
    """Training mode with the teacher's batch norm kept in eval; returns the trainable
    parameters of this stage."""
    codec.train()
    codec.teacher.eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    name = stage["name"]
    if name == "attention":
        mods = [codec.attention]
    else:
        mods = [m for n, m in codec.named_children() if n not in ("teacher", "attention")]
        if name == "joint":
            mods.append(codec.teacher.tail)
    params = [p for m in mods for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def step_loss(codec, x, y, cfg: dict, stage: dict, gen: torch.Generator, frozen: FrozenTargets | None = None,
              cached=None) -> tuple[torch.Tensor, dict]:
    """The loss of one batch. Variational-bottleneck methods distil from `frozen` (the
    teacher's head and a frozen copy of its original tail; `cached` = its (split
    tensor, saliency, logits) from a TargetCache, `x` then only needed when the
    encoder reads the image)."""
    w = {**cfg, **stage}
    m = cfg["method"]
    if stage["name"] == "attention":
        out = codec(x, stage="attention")
        ce = F.cross_entropy(out["logits"], y)
        loss = ce + float(w["l1"]) * out["attention"].mean()
        return loss, dict(ce=ce.detach())
    if m in VB_METHODS:
        kd_on = float(w["kd"]) > 0
        need_logits = kd_on or float(w["ce"]) > 0
        frozen = frozen or FrozenTargets(codec.teacher)
        if cached is not None:
            t, sal, t_logits = cached
        else:
            t, sal, t_logits = frozen.compute(x, y, float(w["saliency"]) > 0, kd_on)
        out = codec(x, logits=need_logits, src=t if codec.method == "splitfleet" else None)
        err = (out["restored"].float() - t.float()) ** 2
        if sal is not None:
            s = float(w["saliency"])
            err = err * ((1 - s) + s * sal[:, None])
        # relative to the teacher tensor's power, so `lam` does not depend on the
        # scale of the features at the split point
        dist = err.mean() / t.float().pow(2).mean()
        bpp = bits(out["likelihoods"]) / (y.shape[0] * codec.prep.size[0] * codec.prep.size[1])
        loss = dist + float(w["lam"]) * bpp
        rec = dict(dist=dist.detach(), bpp=bpp.detach())
        if kd_on:
            kd = F.kl_div(F.log_softmax(out["logits"].float(), 1), F.softmax(t_logits.float(), 1), reduction="batchmean")
            loss = loss + float(w["kd"]) * kd
            rec["kd"] = kd.detach()
        if float(w["ce"]) > 0:
            # joint stage: the tail is trainable and learns the restored tensor
            ce = F.cross_entropy(out["logits"].float(), y)
            loss = loss + float(w["ce"]) * ce
            rec["ce"] = ce.detach()
        return loss, rec
    kw = {}
    if m == "aecnn":
        ks = codec.ks
        kw["k"] = ks[int(torch.randint(0, len(ks), (1,), generator=gen))]
    out = codec(x, **kw)
    ce = F.cross_entropy(out["logits"].float(), y)
    loss = float(w["ce"]) * ce
    rec = dict(ce=ce.detach())
    if float(w["mse"]) > 0:
        # feature reconstruction relative to the split tensor's power: a decoder
        # trained by cross-entropy alone through the frozen tail stayed at chance
        # (measured), so the codec stage distils the features first
        f = out["features"].float()
        mse = F.mse_loss(out["rebuilt"].float(), f) / f.pow(2).mean()
        loss = loss + float(w["mse"]) * mse
        rec["mse"] = mse.detach()
    return loss, rec


def codec_device(codec: torch.nn.Module) -> torch.device:
    return codec.out_scale.device


def image_batches(images: np.ndarray, batch: int, device: torch.device | str = "cpu", prep: Preprocessing | None = None):
    """Normalized NCHW float batches of uint8 NHWC `images`, in order, on `device`."""
    prep = prep or Preprocessing()
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).to(device).permute(0, 3, 1, 2).float()
        yield prep.normalize(x)


@torch.no_grad()
def feature_rms(codec, images: np.ndarray, batch: int = 256) -> float:
    """Root mean square of the teacher tensor the codec's decoder restores."""
    tot, n = 0.0, 0
    for x in image_batches(images, batch, codec_device(codec), codec.prep):
        t = codec.teacher.head(x)
        tot += float(t.pow(2).sum())
        n += t.numel()
    return (tot / max(1, n)) ** 0.5


@torch.no_grad()
def rank_channels(codec: AECNN, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """AECNN: channel order by mean attention weight over `images`, most important first."""
    codec.eval()
    tot = None
    for x in image_batches(images, batch, codec_device(codec), codec.prep):
        a = codec.attention(codec.teacher.head(x)).sum(0)
        tot = a if tot is None else tot + a
    return torch.argsort(tot, descending=True).cpu()


@torch.no_grad()
def symbols_of(codec, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The exported device half on `images`: integer symbols, (N, C, H, W) int32."""
    codec.eval()
    out = []
    for x in image_batches(images, batch, codec_device(codec), codec.prep):
        out.append(codec.device(x).cpu().numpy().astype(np.int32))
    return np.concatenate(out)


@torch.no_grad()
def evaluate_codec(codec, images: np.ndarray, labels: np.ndarray, k: int | None = None, batch: int = 256) -> float:
    """Top-1 of edge(device(x)) exactly as exported; AECNN channels >= k arrive as -1."""
    codec.eval()
    correct = 0
    for i, x in zip(range(0, len(labels), batch), image_batches(images, batch, codec_device(codec), codec.prep)):
        s = codec.device(x)
        if k is not None:
            s[:, k:] = -1
        correct += int((codec.edge(s).argmax(1).cpu().numpy() == labels[i : i + batch]).sum())
    return correct / len(labels)


def cpu_state(codec: torch.nn.Module) -> dict:
    """The state dict with every tensor on the CPU: checkpoints load anywhere."""
    return {k: v.detach().cpu() for k, v in codec.state_dict().items()}


def train_step(codec, opt, x_all, y_all, idx, cfg: dict, stage: dict, gen, dev: torch.device,
               frozen: FrozenTargets | None = None, cache: TargetCache | None = None, view=None) -> dict:
    """One optimizer step on the training images `idx` (augmented on the CPU, then moved
    to `dev`; with a `cache`, each image in its `view` with the cached targets); returns
    the step's loss records, still on the device."""
    cached = None
    mf = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
    if cache is not None:
        x, t, sal, lg = cache.batch(idx, view, x_all, codec.prep, with_images=codec.method != "splitfleet")
        cached = tuple(v.to(dev) if v is not None else None for v in (t.contiguous(memory_format=mf), sal, lg))
        x = x.to(dev).contiguous(memory_format=mf) if x is not None else None
    else:
        x = codec.prep.normalize(augment(x_all[idx], gen, int(cfg["cutout"])).to(dev, non_blocking=True))
        x = x.contiguous(memory_format=mf)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg["autocast"] == "bf16"):
        loss, rec = step_loss(codec, x, y_all[idx].to(dev), cfg, stage, gen, frozen, cached)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return rec


def probe(codec, x_all, y_all, cfg: dict, stage: dict, gen, dev: torch.device, n: int, frozen=None) -> None:
    """Times `n` training steps of `stage` (after 3 warm-up steps) and prints the mean
    seconds per step; used to size GPU runs (sweep.py). Saves nothing."""
    params = set_mode(codec, stage)
    opt = torch.optim.Adam(params, lr=float(stage["lr"]))
    bs = int(cfg["batch"])
    t0 = 0.0
    for s in range(n + 3):
        if s == 3:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.time()
        idx = torch.randint(0, len(y_all), (bs,), generator=gen)
        train_step(codec, opt, x_all, y_all, idx, cfg, stage, gen, dev, frozen)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print(json.dumps(dict(probe=cfg["method"], stage=stage["name"], device=str(dev), batch=bs,
                          step_seconds=round((time.time() - t0) / n, 5), steps_per_epoch=len(y_all) // bs)), flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SPLITFLEET_CIFAR10"),
                    help="the teacher's data: ImageFolder (folder or .tar.gz) whose classes are among its labels")
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=".cache")
    ap.add_argument("--teacher", help="overrides the recipe's teacher run folder")
    ap.add_argument("--lam", type=float, help="overrides the recipe's rate weight")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any top-level recipe key (YAML value), e.g. --set channels=4")
    ap.add_argument("--epochs-scale", type=float, default=1.0,
                    help="multiply every stage's epochs (smoke runs; longer runs on a GPU)")
    ap.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda (default cpu)")
    ap.add_argument("--probe-steps", type=int, default=0,
                    help="time this many training steps of the first stage, print the seconds per step "
                         "as JSON and exit (nothing is saved)")
    args = ap.parse_args(argv)
    if not args.data:
        ap.error("--data (or SPLITFLEET_CIFAR10) is required")
    extra = {}
    for kv in args.set:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            ap.error(f"--set {kv!r}: expected KEY=VALUE")
        extra[k] = yaml.safe_load(v)
    cfg = load_recipe(args.recipe, dict(teacher=args.teacher, lam=args.lam, **extra))
    stages = [dict(s) for s in cfg["stages"]]
    for s in stages:
        s["epochs"] = max(1, round(int(s["epochs"]) * args.epochs_scale))
    cfg["stages"] = stages
    torch.set_num_threads(int(cfg["threads"]))
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emit = run_logger(out)

    set_seed(int(cfg["seed"]))
    codec = build_codec(cfg).to(dev)
    frozen = FrozenTargets(codec.teacher)  # the original tail, before any weights are loaded or trained
    if cfg["method"] in VB_METHODS:
        codec.ste = bool(cfg["ste"])
    try:
        ds = load_images(args.data, codec.prep.size, codec.prep.resize, classes=codec.labels, cache_dir=args.cache)
    except DataError as e:
        raise SystemExit(f"data: {e}") from None
    # every choice is made on a validation split held out of train; the test split is
    # measured only at export
    tr_idx, val_idx, val_hash = validation_split(len(ds.train.labels), int(cfg["val"]))
    tr_images, tr_labels = ds.train.images[tr_idx], ds.train.labels[tr_idx]
    val = ValSet(codec, ds.train.images[val_idx], ds.train.labels[val_idx])
    if int(cfg["batch"]) > len(tr_labels):
        cfg["batch"] = len(tr_labels)  # tiny data sets: one step per epoch
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    pos = (0, 0)  # (stage index, epochs done in it)
    ckpt = out / "last.pt"
    opt_state = None
    best = None
    spent = dict(cpu=0.0, wall=0.0)
    st = load_resume(ckpt, "cfg", cfg)
    if st is not None:
        codec.load_state_dict(st["model"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        random.setstate(st["py_rng"])
        pos, opt_state = tuple(st["pos"]), st["opt"]
        best, spent = st.get("best"), dict(st.get("spent") or spent)
        emit(event="resume", stage=pos[0], epoch=pos[1])
    else:
        warm = None
        if cfg.get("init"):
            # start from another run's trained codec (e.g. a neighbouring rate point)
            # `init_checkpoint`: final (the last epoch) or best (the one its run selected);
            # `init_widen`: the recipe's layers may be wider than the run's (widen.py)
            which = str(cfg.get("init_checkpoint", "final"))
            if which not in ("final", "best"):
                raise SystemExit(f"init_checkpoint is final or best, not {which}")
            init = torch.load(Path(cfg["init"]) / f"{which}.pt", map_location="cpu")
            if init["cfg"]["method"] != cfg["method"]:
                raise SystemExit(f"init run {cfg['init']} is a {init['cfg']['method']} codec, not {cfg['method']}")
            if cfg.get("init_widen"):
                try:
                    state, grown = widen_state(codec.state_dict(), init["model"])
                except ValueError as e:
                    raise SystemExit(str(e)) from None
                codec.load_state_dict(state)
                emit(event="widen", grown=grown)
            else:
                codec.load_state_dict(init["model"])
        elif cfg.get("init_bundle"):
            warm = warm_start(codec, cfg, tr_images, val)
        else:
            codec.out_scale.fill_(feature_rms(codec, tr_images[:: max(1, len(tr_labels) // 1024)]))  # all classes
        emit(event="start", cfg=cfg, out_scale=round(float(codec.out_scale), 5), train=len(tr_labels),
             val=len(val_idx), val_sha256=val_hash, teacher_val_top1=teacher_top1(codec, frozen, val), warm=warm,
             **({"init_" + k: v for k, v in val_metrics(codec, val).items()} if warm or cfg.get("init") else {}))
    prov = dict(seed=int(cfg["seed"]), data=os.path.basename(str(args.data)), dataSha256=file_sha256(args.data),
                valSplit=dict(size=len(val_idx), sha256=val_hash), teacher=teacher_source(cfg["teacher"]),
                commit=code_commit(), torch=torch.__version__, device=str(dev), threads=int(cfg["threads"]))

    x_all = torch.from_numpy(tr_images).permute(0, 3, 1, 2).contiguous()
    y_all = torch.from_numpy(tr_labels)
    if cfg["channels_last"]:
        codec.to(memory_format=torch.channels_last)
    bs = int(cfg["batch"])
    steps = len(y_all) // bs
    if args.probe_steps > 0:
        probe(codec, x_all, y_all, cfg, stages[pos[0]], gen, dev, args.probe_steps, frozen)
        return
    cache = None
    c0, w0 = time.process_time(), time.time()
    if int(cfg["teacher_cache"]) > 0 and pos[0] < len(stages):
        cache = target_cache(frozen, cfg, x_all, y_all, codec.prep, Path(args.cache), prov, val_hash, emit)
    budget = cfg.get("budget_bytes")
    for si in range(pos[0], len(stages)):
        stage = stages[si]
        params = set_mode(codec, stage)
        opt = torch.optim.Adam(params, lr=float(stage["lr"]))
        if opt_state is not None and si == pos[0]:
            opt.load_state_dict(opt_state)
        total = int(stage["epochs"]) * steps
        first = pos[1] if si == pos[0] else 0
        for epoch in range(first, int(stage["epochs"])):
            t0 = time.time()
            set_mode(codec, stage)
            perm = torch.randperm(len(y_all), generator=gen)
            view = torch.randint(0, cache.views, (len(y_all),), generator=gen) if cache is not None else None
            sums: dict[str, torch.Tensor] = {}
            for s in range(steps):
                # cosine decay within the stage
                lr = float(stage["lr"]) * 0.5 * (1 + math.cos(math.pi * (epoch * steps + s) / total))
                for g in opt.param_groups:
                    g["lr"] = lr
                idx = perm[s * bs : (s + 1) * bs]
                rec = train_step(codec, opt, x_all, y_all, idx, cfg, stage, gen, dev, frozen, cache,
                                 view[idx] if view is not None else None)
                for k, v in rec.items():
                    sums[k] = sums.get(k, 0.0) + v
            rec = dict(event="epoch", stage=stage["name"], epoch=epoch + 1, seconds=round(time.time() - t0, 1))
            # the step records stay on the device until here: no synchronization per step
            rec.update({k: round(float(v) / steps, 5) for k, v in sums.items()})
            last_of_stage = epoch + 1 == int(stage["epochs"])
            if last_of_stage and stage["name"] == "attention":
                codec.order.copy_(rank_channels(codec, tr_images[:10000]))
                rec["order"] = codec.order.tolist()
            if stage["name"] != "attention":
                rec.update(val_metrics(codec, val))
            if si == len(stages) - 1 and better(rec, best, budget):
                best = dict(stage=stage["name"], epoch=epoch + 1, **{k: v for k, v in rec.items() if k.startswith("val")})
                save_atomic(dict(model=cpu_state(codec), cfg=cfg, selected=best, provenance=prov), out / "best.pt")
            spent = dict(cpu=spent["cpu"] + time.process_time() - c0, wall=spent["wall"] + time.time() - w0)
            c0, w0 = time.process_time(), time.time()
            nxt = (si, epoch + 1) if not last_of_stage else (si + 1, 0)
            save_atomic(
                dict(
                    model=cpu_state(codec),
                    opt=opt.state_dict() if not last_of_stage else None,
                    gen=gen.get_state(),
                    torch_rng=torch.get_rng_state(),
                    py_rng=random.getstate(),
                    pos=nxt,
                    cfg=cfg,
                    best=best,
                    spent=spent,
                ),
                ckpt,
            )
            emit(**rec)
        opt_state = None
    prov.update(spent_minutes(spent, dev))
    save_atomic(dict(model=cpu_state(codec), cfg=cfg, provenance=prov), out / "final.pt")
    if best is not None and (out / "best.pt").exists():
        b = torch.load(out / "best.pt", map_location="cpu")
        b["provenance"] = prov
        save_atomic(b, out / "best.pt")
    emit(event="done", selected=best, **prov)


if __name__ == "__main__":
    main()

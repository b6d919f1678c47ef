#!/bin/sh
# Trains and exports every shipped learned codec on the resnet9-w05-long teacher.
# The teacher run is rebuilt from the shipped bundle (import_bundle; no retraining).
# Two runs at a time (one thread each) used this machine's 2 cores best: 1 thread ran a
# step at 0.95 s, 2 threads at 0.66 s (FrankenSplit, batch 128).
# Resumable: rerun after an interruption and finished runs are skipped, others resume.
#   cd models && nohup sh recipes/codecs.sh ../../shared/datasets/cifar10-jpeg.tar.gz > runs-codecs.log 2>&1 &
set -eu
D=${1:?usage: codecs.sh <cifar10 archive>}
PY=${PYTHON:-/usr/bin/python3}
# jemalloc that keeps freed pages: 1.8x faster epochs on this machine (glibc malloc
# spent a third of the time in page faults); Debian package libjemalloc2.
JE=/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2
if [ -f "$JE" ]; then export LD_PRELOAD="$JE" MALLOC_CONF="dirty_decay_ms:-1,muzzy_decay_ms:-1"; fi
run() { # out recipe [args...]
  out=$1; shift
  [ -f "runs/$out/final.pt" ] && { echo "skip $out (done)"; return; }
  $PY -m splitfleet_models.train_codec --data "$D" --cache ../.cache --out "runs/$out" --recipe "$@"
}
[ -f runs/resnet9-w05-long/final.pt ] || $PY -m splitfleet_models.import_bundle \
  --bundle zoo/resnet9w05-cifar10-v2 --out runs/resnet9-w05-long --fixtures ../test/fixtures/resnet9w05-cifar10-v2
# FrankenSplit: lam 0.03 from scratch (3 epochs), then lam 0.1 and 0.01 fine-tuned from it (1 epoch each)
run frankensplit-l0.03 recipes/frankensplit.yaml --lam 0.03
for lam in 0.1 0.01; do
  run "frankensplit-l$lam" recipes/frankensplit.yaml --lam $lam --set init=runs/frankensplit-l0.03 --epochs-scale 0.34
done
run aecnn recipes/aecnn.yaml
for c in 1 4; do run "bottlenetpp-c$c" recipes/bottlenetpp.yaml --set channels=$c; done

X="--data $D --cache ../.cache --zoo zoo --fixtures ../test/fixtures"
$PY -m splitfleet_models.export_codec $X --name frankensplit-cifar10 --model-id 3 \
  --run runs/frankensplit-l0.1 --run runs/frankensplit-l0.03 --run runs/frankensplit-l0.01
$PY -m splitfleet_models.export_codec $X --name aecnn-cifar10 --model-id 4 --run runs/aecnn
$PY -m splitfleet_models.export_codec $X --name bottlenetpp-cifar10 --model-id 5 \
  --run runs/bottlenetpp-c1 --run runs/bottlenetpp-c4

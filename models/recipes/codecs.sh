#!/bin/sh
# Trains and exports every shipped learned codec on the resnet9-w05-long teacher.
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
for lam in 0.02 0.05 0.1 0.2; do run "frankensplit-l$lam" recipes/frankensplit.yaml --lam $lam; done
run aecnn recipes/aecnn.yaml
for c in 1 2 4; do run "bottlenetpp-c$c" recipes/bottlenetpp.yaml --set channels=$c; done

X="--data $D --cache ../.cache --zoo zoo --fixtures ../test/fixtures"
$PY -m splitfleet_models.export_codec $X --name frankensplit-cifar10 --model-id 3 \
  --run runs/frankensplit-l0.2 --run runs/frankensplit-l0.1 --run runs/frankensplit-l0.05 --run runs/frankensplit-l0.02
$PY -m splitfleet_models.export_codec $X --name aecnn-cifar10 --model-id 4 --run runs/aecnn
$PY -m splitfleet_models.export_codec $X --name bottlenetpp-cifar10 --model-id 5 \
  --run runs/bottlenetpp-c1 --run runs/bottlenetpp-c2 --run runs/bottlenetpp-c4

#!/bin/sh
# Retrains and exports the splitfleet-cifar10 v2 bundle on a CPU, one thread, from the
# shipped teacher and splitfleet-cifar10 v1 (its three points come first, unchanged; the
# fourth is warm-started from its lam=0.1 point):
#   cd models && nohup sh recipes/splitfleet-v2.sh ../../shared/datasets/cifar10-jpeg.tar.gz > runs-splitfleet-v2.log 2>&1 &
# Resumable: run it again after an interruption and every run continues from its last
# epoch. The run keeps the epoch its validation split chose in runs/sf-l0.01-warm/best.pt,
# which the export ships (results/README.md: the continuation in
# recipes/splitfleet-l0.003-cont.yaml scored lower on the validation split).
set -eu
D=${1:?usage: splitfleet-v2.sh <cifar10 archive>}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -f runs/resnet9-w05-long/final.pt ] || $PY -m splitfleet_models.import_bundle \
  --bundle zoo/resnet9w05-cifar10-v2 --out runs/resnet9-w05-long --fixtures ../test/fixtures/resnet9w05-cifar10-v2
T="--data $D --cache ../.cache"
$PY -m splitfleet_models.train_codec $T --recipe recipes/splitfleet-l0.01-warm.yaml --out runs/sf-l0.01-warm
$PY -m splitfleet_models.export_codec $T --zoo zoo --fixtures ../test/fixtures \
  --name splitfleet-cifar10 --model-id 6 --version 2 --keep zoo/splitfleet-cifar10-v1 --run runs/sf-l0.01-warm/best.pt

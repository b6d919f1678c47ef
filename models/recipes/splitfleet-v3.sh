#!/bin/sh
# Retrains and exports the splitfleet-cifar10 v3 bundle on a CPU, one thread: the four
# points of v2 unchanged, plus point 4, trained from v1's lam=1.0 point at lam 0.5 toward
# 1000x (recipes/splitfleet-l0.5-from1.yaml; the validation split picks its epoch):
#   cd models && nohup sh recipes/splitfleet-v3.sh ../../shared/datasets/cifar10-jpeg.tar.gz > runs-splitfleet-v3.log 2>&1 &
# Resumable: run it again after an interruption and every run continues from its last
# epoch. Without zoo/splitfleet-cifar10-v2 it retrains that first (splitfleet-v2.sh).
set -eu
D=${1:?usage: splitfleet-v3.sh <cifar10 archive>}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -d zoo/splitfleet-cifar10-v2 ] || sh recipes/splitfleet-v2.sh "$D"
[ -f runs/resnet9-w05-long/final.pt ] || $PY -m splitfleet_models.import_bundle \
  --bundle zoo/resnet9w05-cifar10-v2 --out runs/resnet9-w05-long --fixtures ../test/fixtures/resnet9w05-cifar10-v2
T="--data $D --cache ../.cache"
$PY -m splitfleet_models.train_codec $T --recipe recipes/splitfleet-l0.5-from1.yaml --out runs/sf-l0.5-from1
$PY -m splitfleet_models.export_codec $T --zoo zoo --fixtures ../test/fixtures \
  --name splitfleet-cifar10 --model-id 6 --version 3 --keep zoo/splitfleet-cifar10-v2 --run runs/sf-l0.5-from1/best.pt

#!/bin/sh
# One new version of the splitfleet-cifar10 bundle: the shipped teacher imported (once),
# one codec run trained on a CPU thread (resumable: its last epoch is kept), and the
# epoch its validation split chose exported after the points of an earlier version:
#   sh recipes/splitfleet-point.sh <cifar10 archive> <recipe> <run folder> <version> <kept bundle>
# splitfleet-v2.sh and splitfleet-v3.sh call it with their runs.
set -eu
D=${1:?usage: splitfleet-point.sh <cifar10 archive> <recipe> <run folder> <version> <kept bundle>}
RECIPE=${2:?recipe}
RUN=${3:?run folder}
VERSION=${4:?version}
KEEP=${5:?kept bundle}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -f runs/resnet9-w05-long/final.pt ] || $PY -m splitfleet_models.import_bundle \
  --bundle zoo/resnet9w05-cifar10-v2 --out runs/resnet9-w05-long --fixtures ../test/fixtures/resnet9w05-cifar10-v2
T="--data $D --cache ../.cache"
$PY -m splitfleet_models.train_codec $T --recipe "$RECIPE" --out "$RUN"
$PY -m splitfleet_models.export_codec $T --zoo zoo --fixtures ../test/fixtures \
  --name splitfleet-cifar10 --model-id 6 --version "$VERSION" --keep "$KEEP" --run "$RUN/best.pt"

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
exec sh recipes/splitfleet-point.sh "$D" recipes/splitfleet-l0.01-warm.yaml runs/sf-l0.01-warm 2 zoo/splitfleet-cifar10-v1

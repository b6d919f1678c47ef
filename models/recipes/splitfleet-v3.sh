#!/bin/sh
# Retrains and exports the splitfleet-cifar10 v3 bundle on a CPU, one thread: the four
# points of v2 unchanged, plus point 4, trained from v1's lam=1.0 point at lam 0.5 toward
# 1000x (recipes/splitfleet-l0.5-from1.yaml; the validation split picks its epoch):
#   cd models && nohup sh recipes/splitfleet-v3.sh ../../shared/datasets/cifar10-jpeg.tar.gz > runs-splitfleet-v3.log 2>&1 &
# Resumable: run it again after an interruption and every run continues from its last
# epoch. Without zoo/splitfleet-cifar10-v2 it retrains that first (splitfleet-v2.sh).
set -eu
D=${1:?usage: splitfleet-v3.sh <cifar10 archive>}
[ -d zoo/splitfleet-cifar10-v2 ] || sh recipes/splitfleet-v2.sh "$D"
exec sh recipes/splitfleet-point.sh "$D" recipes/splitfleet-l0.5-from1.yaml runs/sf-l0.5-from1 3 zoo/splitfleet-cifar10-v2

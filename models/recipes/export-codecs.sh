#!/bin/sh
# Exports the shipped learned-codec bundles from the runs of recipes/codecs-gpu.yaml
# (trained by splitfleet_models.sweep); one bundle per method, one point per run
# (AECNN: one point per k of its single run). Model ids are pinned here.
#   cd models && sh recipes/export-codecs.sh ../../shared/datasets/cifar10-jpeg.tar.gz
set -eu
D=${1:?usage: export-codecs.sh <cifar10 archive>}
PY=${PYTHON:-/usr/bin/python3}
X="--data $D --cache ../.cache --zoo zoo --fixtures ../test/fixtures"
$PY -m splitfleet_models.export_codec $X --name frankensplit-cifar10 --model-id 3 \
  --run runs/fs-l0.3 --run runs/fs-l0.1 --run runs/fs-l0.03
$PY -m splitfleet_models.export_codec $X --name aecnn-cifar10 --model-id 4 --run runs/aecnn
$PY -m splitfleet_models.export_codec $X --name bottlenetpp-cifar10 --model-id 5 \
  --run runs/bnpp-c1 --run runs/bnpp-c4
$PY -m splitfleet_models.export_codec $X --name splitfleet-cifar10 --model-id 6 \
  --run runs/sf-l1 --run runs/sf-l0.3 --run runs/sf-l0.1

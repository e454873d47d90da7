#!/usr/bin/env bash
# Install everything, build the embedded busybox image, and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
set -x
pallet image build-busybox
pallet images
pallet run --rm busybox echo hello

#!/usr/bin/env bash
# Install everything, then show what pallet finds on this host.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
set -x
pallet plugins ls
pallet info

#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec python3 -m pytest -q -p no:cacheprovider "$@"

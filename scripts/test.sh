#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the whole test suite.
#
# Two passes run side by side: the whole suite with every command run directly (daemonless), and
# the container and runtime modules again with every command sent through the resident engine
# (PALLET_TEST_ENGINE=1), so both paths are held to the same tests (tests/fastpath starts and kills
# engines of its own, so it runs in the first pass only). The passes share no host
# resource a test names: every test has its own root, run root and name prefixes.
# Arguments go to the first pass only (e.g. scripts/test.sh tests/kernel -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

log=$(mktemp -t pallet-engine-pass.XXXXXX)
trap 'rm -f "$log"' EXIT
if (($# == 0)); then
  PALLET_TEST_ENGINE=1 python3 -m pytest -q -p no:cacheprovider tests/containers tests/runtime \
    >"$log" 2>&1 &
  engine_pass=$!
fi
status=0
python3 -m pytest -q -p no:cacheprovider "$@" || status=$?
if (($# == 0)); then
  engine_status=0
  wait "$engine_pass" || engine_status=$?
  echo "== the same container and runtime tests through the resident engine (PALLET_TEST_ENGINE=1):"
  if ((engine_status == 0)); then tail -n 3 "$log"; else cat "$log"; fi
  ((status == 0)) && status=$engine_status
fi
exit "$status"

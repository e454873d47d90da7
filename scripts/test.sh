#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the whole test suite.
#
# Four passes run side by side: the whole suite with every command run directly (daemonless) but
# tests/cluster, in two halves (SECOND_HALF below, and everything else: a new directory lands in the
# first); the container and runtime modules again with every command sent through the resident
# engine through the native thin client (PALLET_TEST_ENGINE=1), so both paths are held to the same
# tests (tests/fastpath runs its client tests with both clients; it starts and
# kills engines of its own, so it runs in the direct pass only); and tests/cluster, whose scenarios
# mostly wait on leases, elections and health checks (so they overlap well with the others on two
# cores). Most tests wait on processes, the disk and timers rather than a core, which is why the
# halves still gain on two cores. The passes share
# no host resource a test names: every test has its own root, run root, name prefixes and etcd
# members; the cluster nodes' overlays live in simulated hosts' namespaces. Arguments replace all of
# this with one pass (e.g. scripts/test.sh tests/kernel -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

SECOND_HALF=(tests/services tests/hardening tests/trust tests/pods tests/backends tests/security tests/build)
# Run alone, after the parallel passes: the network kit checks that the host's whole link table is as it
# was, and the other passes make and remove bridges and veths meanwhile (CI saw tests/pods' bridge there).
ALONE=(tests/kernel/test_conformance_kits.py)
log=$(mktemp -t pallet-engine-pass.XXXXXX)
cluster_log=$(mktemp -t pallet-cluster-pass.XXXXXX)
half_log=$(mktemp -t pallet-second-half.XXXXXX)
trap 'rm -f "$log" "$cluster_log" "$half_log"' EXIT
status=0
# A non-interactive shell starts `&` jobs with SIGINT and SIGQUIT ignored, and its children inherit that:
# the tests that Ctrl-C a `pallet stats`, `build` or `attach` found it deaf in a background pass.
bg="env --default-signal=INT,QUIT"
if (($# == 0)); then
  PALLET_TEST_ENGINE=1 $bg python3 -m pytest -q -p no:cacheprovider tests/containers tests/runtime \
    >"$log" 2>&1 &
  engine_pass=$!
  $bg python3 -m pytest -q -p no:cacheprovider tests/cluster >"$cluster_log" 2>&1 &
  cluster_pass=$!
  $bg python3 -m pytest -q -p no:cacheprovider "${SECOND_HALF[@]}" >"$half_log" 2>&1 &
  half_pass=$!
  ignore=(--ignore=tests/cluster)
  for dir in "${SECOND_HALF[@]}" "${ALONE[@]}"; do ignore+=("--ignore=$dir"); done
  echo "== the direct pass, first half (all of tests/ but tests/cluster, ${SECOND_HALF[*]} and ${ALONE[*]}):"
  python3 -m pytest -q -p no:cacheprovider "${ignore[@]}" || status=$?
  for pass in half engine cluster; do
    pass_status=0
    if [[ $pass == half ]]; then
      wait "$half_pass" || pass_status=$?
      echo "== the direct pass, second half (${SECOND_HALF[*]}):"
      output=$half_log
    elif [[ $pass == engine ]]; then
      wait "$engine_pass" || pass_status=$?
      echo "== the same container and runtime tests through the resident engine (PALLET_TEST_ENGINE=1):"
      output=$log
    else
      wait "$cluster_pass" || pass_status=$?
      echo "== the cluster tests (tests/cluster):"
      output=$cluster_log
    fi
    if ((pass_status == 0)); then tail -n 3 "$output"; else cat "$output"; fi
    ((status == 0)) && status=$pass_status
  done
  echo "== alone, once the other passes are done (${ALONE[*]}):"
  pass_status=0
  python3 -m pytest -q -p no:cacheprovider "${ALONE[@]}" || pass_status=$?
  ((status == 0)) && status=$pass_status
else
  python3 -m pytest -q -p no:cacheprovider "$@" || status=$?
fi
exit "$status"

#!/usr/bin/env bash
# Install the engines the benchmarks compare with (not needed by pallet or its tests).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends podman docker.io runc crun skopeo >/dev/null

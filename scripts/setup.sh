#!/usr/bin/env bash
# Install everything pallet and its test suite need on a fresh Debian 12 machine (run as root):
# system packages (runtimes and peers to compare with, storage and network tools, a local registry,
# etcd, busybox for the default image) and pallet itself in editable mode with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  busybox-static                                   # the embedded default image
  gcc libc6-dev                                    # the native thin client (kernel/client.c)
  runc crun                                        # peer runtimes (the bundle must run under runc)
  skopeo umoci docker-registry apache2-utils       # registry peers and test-image tools
  gnupg                                            # GPG simple signing (image trust)
  rpm                                              # a real rpm database for the SBOM tests
  openssl zstd                                     # token-auth test certificates, zstd layers
  btrfs-progs libbtrfsutil-dev zfs-fuse thin-provisioning-tools lvm2 e2fsprogs xfsprogs
  nftables iptables iproute2 etcd-server           # networking and the overlay's cluster store
  containernetworking-plugins                      # the CNI reference plugins the cni driver runs
  libseccomp-dev libseccomp2 uidmap                # security
  procps psmisc util-linux hyperfine               # process tools, benchmarks
  tini                                             # run --init (its static build is bound into the container)
  buildah                                          # the peer `pallet build` is compared with
  docker-compose                                   # compose 1.29 (python3-docker) against pallet serve
  docker.io                                        # a second API client (CLI 20.10) and dockerd, the peer of the benchmarks
  podman conmon                                    # `podman system service` and conmon, peers of the benchmarks
)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Engine API socket of `pallet serve` is root:pallet 0660: the group's members are its users.
getent group pallet >/dev/null || groupadd --system pallet

# Debian starts some of these as services where an init system runs; pallet's tests start their own.
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check -e '.[test,btrfs,fast-pull]'

# The native thin client, beside the `pallet` script that execs it (kernel/client.c: ~1 ms where a Python
# start is ~10). Without a C compiler the script runs kernel/launcher.py instead, which does the same.
bindir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
if cc -O2 -o "$bindir/.pallet-client.new" kernel/client.c; then
  mv -f "$bindir/.pallet-client.new" "$bindir/pallet-client"
else
  rm -f "$bindir/.pallet-client.new" "$bindir/pallet-client"
  echo "setup: kernel/client.c did not build; pallet uses its Python thin client" >&2
fi

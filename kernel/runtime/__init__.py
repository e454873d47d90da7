"""pallet's own OCI runtime pieces: syscalls, rootfs, capabilities, seccomp and cgroups."""

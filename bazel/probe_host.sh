#!/usr/bin/env bash
# probe_host.sh CAPABILITY: exits 0 if this machine, as this user, has CAPABILITY, else prints why
# not and exits 1. Run by //bazel:host_capabilities.bzl when Bazel fetches @host_capabilities.
#   network_namespaces  what tests/multihost/netns_hosts.sh makes its hosts of: ip netns, a UTS
#                       namespace inside one, a bridge and a veth pair
#   pid_namespaces      unshare --pid (tests/deploy/other_node/mpiexec)
set -uo pipefail
case "${1:-}" in
  network_namespaces)
    [ "$(id -u)" -eq 0 ] || { echo "not root (uid $(id -u))"; exit 1; }
    command -v ip >/dev/null || { echo "no ip command (Debian package iproute2)"; exit 1; }
    command -v unshare >/dev/null ||
      { echo "no unshare command (Debian package util-linux)"; exit 1; }
    ns="mgprobe$$"
    error="$(ip netns add "$ns" 2>&1)" || { echo "ip netns add failed: ${error}"; exit 1; }
    trap 'ip netns del "$ns" 2>/dev/null' EXIT
    ip netns exec "$ns" unshare --uts hostname probe >/dev/null 2>&1 ||
      { echo "cannot give a namespace a host name of its own (unshare --uts)"; exit 1; }
    ip -n "$ns" link add br0 type bridge >/dev/null 2>&1 || { echo "no bridge support"; exit 1; }
    ip -n "$ns" link add p0 type veth peer name p1 >/dev/null 2>&1 ||
      { echo "no veth support"; exit 1; }
    ;;
  pid_namespaces)
    unshare --pid --fork --kill-child true >/dev/null 2>&1 ||
      { echo "unshare --pid failed (needs root or CAP_SYS_ADMIN)"; exit 1; }
    ;;
  *) echo "usage: probe_host.sh network_namespaces|pid_namespaces" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The Debian package (//packaging:deb) in a fresh root: this machine's Debian system as an overlay
# with the checkout and Bazel's trees hidden, chrooted into, in a mount and PID namespace of the
# test's own (every process dies with it). There:
#   - dpkg -i installs it: its Depends are installed Debian packages;
#   - every shared library its ELF files load and every Python module it imports comes from a
#     package in the closure of its Depends (what apt-get install ./mpigate_*.deb pulls in);
#   - installed_smoke.sh /usr, with no environment variable: mpigate serve, a task library built
#     with pkg-config mpigate-task, a C++ example, a mpigate.futures map, Node, man pages;
#   - dpkg --purge leaves nothing: the overlay's upper layer holds no file but dpkg's records and
#     the man-db and ldconfig caches its triggers refresh, and no directory the system lacked.
set -euo pipefail
if [ "${1:-}" != --in-namespace ]; then
  exec unshare --mount --pid --fork --propagation private -- "$0" --in-namespace
fi
runfiles="$TEST_SRCDIR/mpigate"
# shellcheck source=tests/packaging/clean_root.sh
source "$runfiles/tests/packaging/clean_root.sh"

work="$(mktemp -d "$TEST_TMPDIR/deb.XXXXXX")"
root="$work/root"
make_root "$work"
cp "$runfiles/packaging/mpigate.deb" "$runfiles/tests/packaging/installed_smoke.sh" \
  "$runfiles/tests/packaging/dependency_closure.py" "$root/tmp/"
mapfile -t environment < <(clean_env)
in_root() { chroot "$root" env -i "${environment[@]}" "$@"; }

in_root dpkg -i /tmp/mpigate.deb >"$work/dpkg.log" 2>&1 || {
  cat "$work/dpkg.log" >&2; echo "FAIL: dpkg -i" >&2; exit 1; }
in_root /usr/bin/python3 /tmp/dependency_closure.py mpigate \
  mpigate mpigate.futures mpigate.v1.gateway_pb2 mpigate._python_task cloudpickle numpy mpi4py
in_root /tmp/installed_smoke.sh /usr

in_root dpkg --purge mpigate >"$work/dpkg.log" 2>&1 || {
  cat "$work/dpkg.log" >&2; echo "FAIL: dpkg --purge" >&2; exit 1; }
umount -R "$root"
prune=(-path ./var/lib/dpkg -o -path ./var/log -o -path ./var/cache/man -o -path
       ./var/cache/ldconfig -o -path ./etc/ld.so.cache -o -path ./proc -o -path ./dev -o -path ./sys)
for path in "${MOUNTPOINTS[@]}"; do prune+=(-o -path ".${path#"$root"}"); done
leftovers="$(cd "$work/upper" && find . -mindepth 1 \( "${prune[@]}" \) -prune -o \
  \( -type d -exec test -d "/{}" \; \) -o -print)"
if [ -n "$leftovers" ]; then
  echo "FAIL: left after dpkg --purge mpigate:" >&2
  echo "$leftovers" >&2
  exit 1
fi
echo "deb_test: ok"

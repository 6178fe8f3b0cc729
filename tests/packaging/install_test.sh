#!/usr/bin/env bash
# tools/install.sh --prefix: the installed layout (//packaging:tree) under a prefix and its
# modulefile, loaded with Environment Modules (`module load`). Then, in a fresh root (this
# system's, with the checkout and Bazel's trees hidden; clean_root.sh) in a mount and PID namespace
# of the test's own, and an environment made of a clean one plus the module's PATH, PYTHONPATH,
# PKG_CONFIG_PATH and MANPATH alone: installed_smoke.sh
# (mpigate serve, a task library built with pkg-config, a C++ example, a mpigate.futures map,
# Node, the man pages).
set -euo pipefail
if [ "${1:-}" != --in-namespace ]; then
  exec unshare --mount --pid --fork --propagation private -- "$0" --in-namespace
fi
runfiles="$TEST_SRCDIR/mpigate"
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=tests/packaging/clean_root.sh
source "$runfiles/tests/packaging/clean_root.sh"

work="$(mktemp -d "$TEST_TMPDIR/install.XXXXXX")"
prefix="$work/prefix"
version="$(cat "$runfiles/VERSION")"
"$runfiles/tools/install.sh" --prefix="$prefix" --tree="$runfiles/packaging/tree" >/dev/null
modulefile="$prefix/modulefiles/mpigate/$version"
[ -f "$modulefile" ] || fail "no modulefile $modulefile"

# The module's variables, as `module load` sets them, starting from a clean environment.
mapfile -t environment < <(clean_env)
mapfile -t loaded < <(env -i "${environment[@]}" bash -c '
  source /usr/share/modules/init/bash
  module use "$1/modulefiles"
  module load mpigate
  env' _ "$prefix" | grep -E '^(PATH|PYTHONPATH|PKG_CONFIG_PATH|MANPATH)=')
for variable in PATH PYTHONPATH PKG_CONFIG_PATH MANPATH; do
  printf '%s\n' "${loaded[@]}" | grep -q "^$variable=" ||
    fail "module load sets no $variable; it set: $(printf '%s ' "${loaded[@]}")"
done
expect() {
  printf '%s\n' "${loaded[@]}" | grep -qxF "$1" || fail "module load: not $1 but $(printf '%s ' "${loaded[@]}")"
}
expect "PATH=$prefix/bin:/usr/sbin:/usr/bin:/sbin:/bin"
expect "PYTHONPATH=$prefix/lib/python3/dist-packages"
expect "PKG_CONFIG_PATH=$prefix/share/pkgconfig"
expect "MANPATH=$prefix/share/man:"

make_root "$work/chroot" "$prefix"
cp "$runfiles/tests/packaging/installed_smoke.sh" "$work/chroot/root/tmp/"
chroot "$work/chroot/root" env -i "${environment[@]}" "${loaded[@]}" /tmp/installed_smoke.sh "$prefix"
echo "install_test: ok"

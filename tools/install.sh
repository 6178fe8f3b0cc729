#!/usr/bin/env bash
# Installs mpigate under a prefix, for sites without root: the Debian package's layout (see
# packaging/BUILD.bazel) and a modulefile for Environment Modules or Lmod.
#
#   tools/install.sh --prefix=DIR [--tree=TREE]
#   module use DIR/modulefiles && module load mpigate    # PATH, PYTHONPATH, PKG_CONFIG_PATH, MANPATH
#
# Builds //packaging:tree (optimized) unless --tree names one already built. The modulefile is
# DIR/modulefiles/mpigate/VERSION (VERSION: the repository's VERSION file). Installing again
# over the same prefix replaces the files.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix="" tree=""
for arg in "$@"; do
  case "$arg" in
    --prefix=*) prefix="${arg#--prefix=}" ;;
    --tree=*) tree="${arg#--tree=}" ;;
    *) echo "usage: tools/install.sh --prefix=DIR [--tree=TREE]" >&2; exit 2 ;;
  esac
done
if [ -z "$prefix" ]; then
  echo "usage: tools/install.sh --prefix=DIR [--tree=TREE]" >&2
  exit 2
fi
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
# Compiler flags from pkg-config, MANPATH and LD_PRELOAD (the server's loopback library) all split
# at white space or colons.
case "$prefix" in
  *[[:space:]:\|]*)
    echo "install: the prefix '$prefix' holds white space, a colon, a backslash or a '|'" >&2
    exit 2 ;;
esac
if [ -z "$tree" ]; then
  (cd "$here" && ./tools/setup.sh && bazel build -c opt //packaging:tree)
  tree="$here/bazel-bin/packaging/tree"
fi
version="$(cat "$here/VERSION")"
"$here/packaging/install_tree.sh" "$tree" "$prefix"
mkdir -p "$prefix/modulefiles/mpigate"
sed -e "s|@MPIGATE_PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" \
    "$here/packaging/modulefile.in" > "$prefix/modulefiles/mpigate/$version"
echo "install: mpigate $version in $prefix; module use $prefix/modulefiles && module load mpigate"

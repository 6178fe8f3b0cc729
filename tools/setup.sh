#!/usr/bin/env bash
# Installs the Debian packages mpigate needs, if any are missing. Idempotent, and quick when
# everything is already there. Builds nothing: the build is Bazel's job (see README.md).
#
#   tools/setup.sh                 what mpigate needs to build and test
#   tools/setup.sh --bench-peers   what bench/compare.sh compares it with (not needed to test)
set -euo pipefail

# Bazel 4.2.3 and rules_java (offline build); the C++ toolchain; gRPC 1.51, Protobuf 3.21 and
# Abseil with protoc and grpc_cpp_plugin; GoogleTest; Open MPI 4.1; TCMalloc for the service.
packages=(
  bazel-bootstrap
  bazel-rules-java
  g++
  pkg-config
  libgrpc++-dev
  libabsl-dev
  libprotobuf-dev
  protobuf-compiler
  protobuf-compiler-grpc
  libgtest-dev
  libgmock-dev
  libopenmpi-dev
  openmpi-bin
  libgoogle-perftools-dev
)
what="mpigate needs"
case "${1:-}" in
  "") ;;
  --bench-peers)
    # mpi4py.futures and Dask, run with Debian's /usr/bin/python3, and gnuplot for the plot.
    packages=(python3-mpi4py python3-distributed gnuplot-nox)
    what="bench/compare.sh compares with"
    ;;
  *) echo "usage: tools/setup.sh [--bench-peers]" >&2; exit 2 ;;
esac
missing=()
for name in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$name")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} Debian packages $what are installed"
  exit 0
fi

echo "setup: installing missing Debian packages: ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "setup: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"

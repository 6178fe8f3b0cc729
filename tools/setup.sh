#!/usr/bin/env bash
# Installs the Debian packages mpigate needs, if any are missing. Idempotent, and quick when
# everything is already there. Builds nothing: the build is Bazel's job (see README.md).
#
#   tools/setup.sh                 what mpigate needs to build and test
#   tools/setup.sh --mpich         MPICH 4.0 too, for --config=mpich (tools/test.sh --mpich)
#   tools/setup.sh --bench-peers   what bench/compare.sh compares it with (not needed to test)
set -euo pipefail

# Bazel 4.2.3 and rules_java (offline build); the C++ toolchain, and clang 14 for the build that
# checks the thread-safety annotations (--config=clang-tsa); gRPC 1.51, Protobuf 3.21 and
# Abseil with protoc, grpc_cpp_plugin and grpc_python_plugin; GoogleTest; Open MPI 4.1; TCMalloc
# for the service; gRPC and Protobuf for Debian's /usr/bin/python3 (the Python client); CPython
# 3.11 to embed, cloudpickle, numpy and mpi4py (the workers' Python task runtime, worker/python,
# and mpigate.futures); openssl (the TLS tests make their certificates), iproute2 (the
# multi-host test's network namespaces), chromium (the live page's test loads it headless) and
# tmux (the test of `mpigate top` reads its screen back); dpkg-dev (the Debian package's
# dependencies), and make, man-db and environment-modules (tests/packaging builds the task library
# example, reads the man pages and loads tools/install.sh's modulefile).
packages=(
  bazel-bootstrap
  bazel-rules-java
  g++
  clang-14
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
  python3-grpcio
  python3-protobuf
  python3-dev
  libpython3.11-dev
  python3-cloudpickle
  python3-numpy
  python3-mpi4py
  openssl
  iproute2
  chromium
  tmux
  dpkg-dev
  make
  man-db
  environment-modules
)
# Node.js for the Node client example: Debian's nodejs and npm, unless a node and npm (e.g.
# NodeSource's nodejs, which bundles npm) are already on the PATH.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
what="mpigate needs"
case "${1:-}" in
  "") ;;
  --mpich)
    # Next to Open MPI, not instead: installing it changes Debian's `mpi` alternatives (mpicc,
    # mpiexec, mpi.h), which neither build uses (bazel/system_deps.bzl asks pkg-config for
    # `ompi-c` and `mpich` and calls mpiexec.openmpi and mpiexec.mpich by name).
    packages+=(mpich libmpich-dev)
    what="mpigate needs, with MPICH"
    ;;
  --bench-peers)
    # mpi4py.futures and Dask, run with Debian's /usr/bin/python3, and gnuplot for the plot.
    packages=(python3-mpi4py python3-distributed gnuplot-nox)
    what="bench/compare.sh compares with"
    ;;
  *) echo "usage: tools/setup.sh [--mpich | --bench-peers]" >&2; exit 2 ;;
esac
install_missing_debian_packages() {
  local missing=() name
  for name in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$name")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#packages[@]} Debian packages $what are installed"
    return
  fi
  echo "setup: installing missing Debian packages: ${missing[*]}"
  local sudo=()
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
}

install_missing_debian_packages

# The npm modules of the Node client example (client/node: @grpc/grpc-js, @grpc/proto-loader),
# exactly as its package-lock.json pins them, when node_modules is missing or older than the lock
# file. From npm's cache when it has them; no install scripts (the modules are plain JavaScript).
install_node_client_modules() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/client/node"
  if [ -d "$dir/node_modules" ] && [ "$dir/node_modules" -nt "$dir/package-lock.json" ]; then
    echo "setup: the Node client's npm modules are installed"
    return
  fi
  echo "setup: installing the Node client's npm modules (npm ci in client/node)"
  (cd "$dir" && npm ci --no-audit --no-fund --prefer-offline --ignore-scripts --loglevel=error \
    >/dev/null)
  # npm ci may leave the directory's time older than a lock file just checked out.
  touch "$dir/node_modules"
}

if [ "${1:-}" != --bench-peers ]; then install_node_client_modules; fi

#!/usr/bin/env bash
# Builds the Debian package: dist/mpigate_VERSION_ARCH.deb (VERSION: the repository's VERSION
# file), from the optimized build (//packaging:deb; see packaging/BUILD.bazel for the layout).
#
#   tools/package-deb.sh
#   apt-get install ./dist/mpigate_*.deb      # pulls in its Debian dependencies
#   dpkg -r mpigate                           # removes every file it installed
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
bazel build -c opt //packaging:deb
name="mpigate_$(cat VERSION)_$(dpkg --print-architecture).deb"
mkdir -p dist
install -m 644 bazel-bin/packaging/mpigate.deb "dist/$name"
echo "package-deb: dist/$name"

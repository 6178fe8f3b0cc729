#!/usr/bin/env bash
# Copies the installed layout (//packaging:tree) under PREFIX, inside DESTDIR when given (a
# package's staging directory), and writes PREFIX into the files that name it (@MPIGATE_PREFIX@):
#
#   packaging/install_tree.sh TREE PREFIX [DESTDIR]
#
# Modes are 0755 for the executables the tree lists in .executables and for directories, 0644 for
# the rest. Prints nothing; fails on the first error.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: install_tree.sh TREE PREFIX [DESTDIR]" >&2
  exit 2
fi
tree="$1" prefix="$2" destdir="${3:-}"
case "$prefix" in
  /*) ;;
  *) echo "install_tree.sh: PREFIX must be absolute, got '$prefix'" >&2; exit 2 ;;
esac
prefix="${prefix%/}"
case "$prefix" in *"|"*) echo "install_tree.sh: PREFIX must not hold a '|'" >&2; exit 2 ;; esac
target="$destdir$prefix"
mkdir -p "$target"
# One copy of the whole tree (its files may be symbolic links into Bazel's output, in a sandbox),
# then modes and the prefix set on the tree's own files only: PREFIX may hold others (/usr).
cp -RL --no-preserve=mode,ownership "$tree/." "$target/"
rm -f "$target/.executables"
(cd "$tree" && find -L . -mindepth 1 -type d -print0) | (cd "$target" && xargs -0 -r chmod 755)
(cd "$tree" && find -L . -type f ! -name .executables -print0) |
  (cd "$target" && xargs -0 -r chmod 644)
(cd "$target" && xargs -d '\n' -r chmod 755) < "$tree/.executables"
(cd "$tree" && { grep -RlIZ '@MPIGATE_PREFIX@' . || [ $? -eq 1 ]; }) | while IFS= read -r -d '' file; do
  sed -e "s|@MPIGATE_PREFIX@|$prefix|g" "$tree/$file" > "$target/$file"
done

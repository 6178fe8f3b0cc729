#!/usr/bin/env bash
# Builds the Debian package from the installed layout (//packaging:deb; tools/package-deb.sh):
#
#   packaging/build_deb.sh TREE VERSION_FILE INSTALL_TREE_SH OUT.deb
#
# The tree goes under /usr. Depends names the Debian packages of every shared library the ELF
# files link (dpkg-shlibdeps, as debhelper's ${shlibs:Depends}) and, from control.in, what they
# run or import that no linker sees: Open MPI's launcher and daemon, Python and its modules.
set -euo pipefail
tree="$1" version="$(cat "$2")" install_tree="$3" out="$4"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/stage"
"$install_tree" "$tree" /usr "$stage"

elves=()
while IFS= read -r -d '' file; do
  if [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = '177ELF' ]; then elves+=("$file"); fi
done < <(find "$stage" -type f -print0)
mkdir -p "$work/debian"
printf 'Source: mpigate\n\nPackage: mpigate\nArchitecture: any\n' > "$work/debian/control"
if ! shlibs="$(cd "$work" && dpkg-shlibdeps -O "${elves[@]}" 2>"$work/shlibdeps.log")"; then
  cat "$work/shlibdeps.log" >&2
  exit 1
fi
shlibs="${shlibs#shlibs:Depends=}"

mkdir -p "$stage/DEBIAN"
sed -e "s|@VERSION@|$version|" \
    -e "s|@ARCH@|$(dpkg --print-architecture)|" \
    -e "s|@INSTALLED_SIZE@|$(du -sk "$stage" | cut -f1)|" \
    -e "s|@SHLIBS@|$shlibs|" \
    "$here/control.in" > "$stage/DEBIAN/control"
install -m 755 "$here/debian/postinst" "$here/debian/prerm" "$stage/DEBIAN/"
# zstd, which Debian 12's dpkg and apt read: on a busy 2-core machine xz's default took 220 s for
# this package, zstd 1 s (16 MB against xz's 10).
dpkg-deb --root-owner-group -Zzstd --build "$stage" "$out" >/dev/null

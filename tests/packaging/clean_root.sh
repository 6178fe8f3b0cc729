# Sourced by the packaging tests, which run as root in a mount and PID namespace of their own
# (unshare): a fresh root made of this machine's Debian system, in which the checkout and Bazel's
# trees are hidden, so that an installed mpigate can find nothing of the build.
#
#   make_root WORK [KEEP...]   WORK/root: an overlay of / (writes go to WORK/upper), with /proc,
#                              /dev, /sys, fresh /tmp, /run and /dev/shm, empty tmpfs over the
#                              workspace and Bazel's output user root; the directories KEEP and
#                              those of the sanitizer runtimes' logs and suppression files
#                              (run_test.sh) stay visible at their paths
#   clean_env                  a login-like environment (env -i ARGS), sanitizer settings kept
#   MOUNTPOINTS                the directories make_root created in the root to mount on

MOUNTPOINTS=()

_mount_dir() {  # mkdir -p that remembers what it made, for the leftover check
  local dir="$1" missing="$1"
  while [ ! -e "$missing" ]; do
    MOUNTPOINTS+=("$missing")
    missing="$(dirname "$missing")"
  done
  mkdir -p "$dir"
}

make_root() {
  local work="$1" root="$1/root" workspace bazel_root path
  shift
  mkdir -p "$work/upper" "$work/overlay-work" "$root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/overlay-work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  # Both from this test's own runfiles: a source file and a generated one.
  workspace="$(dirname "$(readlink -f "$TEST_SRCDIR/mpigate/VERSION")")"
  bazel_root="$(readlink -f "$TEST_SRCDIR/mpigate/packaging/install_tree.bzl")"
  bazel_root="$(dirname "${bazel_root%%/execroot/*}")"
  local keep=("$@") files=()
  for path in $(env | grep -oE '(^|[:=])log_path=/[^:]+' | sed 's/.*=//'); do
    keep+=("$(dirname "$path")")
  done
  # Suppression files are links in the runfiles tree to files elsewhere in Bazel's trees.
  for path in $(env | grep -oE '(^|[:=])suppressions=/[^:]+' | sed 's/.*=//'); do
    files+=("$path")
  done
  # The fresh directories first: a checkout (or a directory to keep) under /tmp must be hidden (or
  # shown) on top of the fresh /tmp, not under it, where umount -R could no longer reach its mount.
  for path in /tmp /run /dev/shm; do
    _mount_dir "$root$path"
    mount -t tmpfs -o mode=1777 fresh "$root$path"
  done
  for path in "$workspace" "$bazel_root"; do
    _mount_dir "$root$path"
    mount -t tmpfs -o mode=0755 hidden "$root$path"
  done
  for path in "${keep[@]}"; do
    _mount_dir "$root$path"
    mount --bind "$path" "$root$path"
  done
  for path in "${files[@]}"; do
    _mount_dir "$root$(dirname "$path")"
    touch "$root$path"
    mount --bind "$(readlink -f "$path")" "$root$path"
  done
  [ ! -e "$root$workspace/VERSION" ] || { echo "FAIL: the checkout is visible in $root" >&2; exit 1; }
}

clean_env() {
  local args=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 USER=root LOGNAME=root)
  local name
  for name in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS; do
    if [ -n "${!name:-}" ]; then args+=("$name=${!name}"); fi
  done
  printf '%s\n' "${args[@]}"
}

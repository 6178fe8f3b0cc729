# Sourced by the packaging tests, which run as root in a mount and PID namespace of their own
# (unshare): a view of this machine in which the checkout and Bazel's trees are hidden, so that
# an installed mpigate can find nothing of the build.
#
#   hide_build ROOT    under ROOT ("" for /): empty tmpfs over the workspace and Bazel's output
#                      user root, and fresh /tmp, /run and /dev/shm; the sanitizer runtimes' log
#                      directory and suppression files (run_test.sh) stay where they were
#   clean_env          a login-like environment (env -i ARGS), with the sanitizer settings kept
#   MOUNTPOINTS        the directories hide_build made under ROOT to mount on

MOUNTPOINTS=()

_mount_dir() {  # mkdir -p that remembers what it made, for the leftover check
  local dir="$1" missing="$1"
  while [ ! -e "$missing" ]; do
    MOUNTPOINTS+=("$missing")
    missing="$(dirname "$missing")"
  done
  mkdir -p "$dir"
}

hide_build() {
  local root="$1" workspace bazel_root keep path
  # Both from this test's own runfiles: a source file and a generated one.
  workspace="$(dirname "$(readlink -f "$TEST_SRCDIR/mpigate/VERSION")")"
  bazel_root="$(readlink -f "$TEST_SRCDIR/mpigate/packaging/mpigate.deb")"
  bazel_root="${bazel_root%%/execroot/*}"
  bazel_root="$(dirname "$bazel_root")"
  keep=()
  for path in $(env | grep -oE '(log_path|suppressions)=[^:]+' | cut -d= -f2); do
    keep+=("$(dirname "$path")")
  done
  for path in "$workspace" "$bazel_root"; do
    _mount_dir "$root$path"
    mount -t tmpfs -o mode=0755 hidden "$root$path"
  done
  for path in "${keep[@]}"; do
    _mount_dir "$root$path"
    mount --bind "$path" "$root$path"
  done
  for path in /tmp /run /dev/shm; do
    _mount_dir "$root$path"
    mount -t tmpfs -o mode=1777 fresh "$root$path"
  done
}

clean_env() {
  local args=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 USER=root LOGNAME=root)
  local name
  for name in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS; do
    if [ -n "${!name:-}" ]; then args+=("$name=${!name}"); fi
  done
  printf '%s\n' "${args[@]}"
}

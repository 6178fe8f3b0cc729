#!/usr/bin/env bash
# What a user does with an installed mpigate, run in a clean environment with no checkout and no
# build tree in sight (deb_test.sh and install_test.sh set that up):
#
#   installed_smoke.sh PREFIX
#
# Every program, module, header, pkg-config module and man page must come from PREFIX, found
# through the environment as it is (PATH, PYTHONPATH, PKG_CONFIG_PATH, MANPATH, or their
# defaults). Starts `mpigate serve` with a task library built out of tree against the installed
# headers, runs a task of it, a C++ example, a Python mpigate.futures map and the Node example
# against it, reads the man pages, and stops the service.
set -euo pipefail
prefix="$1"
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_path() {  # what, found, expected
  [ "$2" = "$3" ] || fail "$1 is '$2', not '$3'"
}

expect_path "mpigate on PATH" "$(command -v mpigate)" "$prefix/bin/mpigate"
expect_path "mpigate-server on PATH" "$(command -v mpigate-server)" "$prefix/bin/mpigate-server"
expect_path "the Python package" \
  "$(cd / && /usr/bin/python3 -c 'import mpigate.futures, mpigate.v1.gateway_pb2; print(mpigate.__file__)')" \
  "$prefix/lib/python3/dist-packages/mpigate/__init__.py"
expect_path "pkg-config mpigate-task's prefix" "$(pkg-config --variable=prefix mpigate-task)" "$prefix"
for page in mpigate mpigate-server; do
  expect_path "man $page" "$(man -w "$page")" "$prefix/share/man/man1/$page.1.gz"
done
expect_path "man mpigate-task" "$(man -w 3 mpigate-task)" "$prefix/share/man/man3/mpigate-task.3.gz"

# The man pages say what --help says.
export MANPAGER=cat MANWIDTH=100
man mpigate | grep -q "mpigate \[--endpoint=TARGET\]" || fail "man mpigate has no synopsis"
for command in serve submit map status shutdown; do
  man mpigate | grep -q "Usage: mpigate $command" || fail "man mpigate lacks mpigate $command"
done
for flag in $(mpigate-server --help | grep -oE '^    --[a-z_]+' | tr -d ' ' | tr _ -); do
  man mpigate-server | grep -qe "$flag" || fail "man mpigate-server lacks $flag"
done
man 3 mpigate-task | grep -q "MPIGATE_TASK(" || fail "man mpigate-task lacks MPIGATE_TASK"

# A task library built out of tree against the installed headers, with pkg-config.
build="$(mktemp -d)"
cp -r "$prefix/share/doc/mpigate/examples/task_library" "$build/"
make -s -C "$build/task_library" >/dev/null || fail "the task library example does not build"

run="$(mktemp -d)"
mkfifo "$run/out"
mpigate serve --workers=2 --task-lib="$build/task_library/libmy_tasks.so" \
  --task-lib=libmpigate_examples.so --task-lib-path="$prefix/lib/mpigate/examples" \
  >"$run/out" 2>"$run/err" &
server=$!
exec {out}<"$run/out"
ready=""
while IFS= read -r line <&"$out"; do
  case "$line" in *"mpigate-server: ready"*) ready="$line"; break ;; esac
done
[ -n "$ready" ] || { cat "$run/err" >&2; fail "mpigate serve ended without a ready line"; }
case "$ready" in *"pool broken"*) fail "$ready" ;; esac
# Python is on in the installed layout: the server found libmpigate_python.so in lib/mpigate.
grep -q "no Python tasks" "$run/err" && fail "the server found no Python runtime: $(cat "$run/err")"

shout="$(mpigate submit mytasks.shout hello)"
case "$shout" in "hello! (worker "[01]" of 2)") ;; *) fail "mytasks.shout answered '$shout'" ;; esac

"$prefix/lib/mpigate/examples/examples_client" >"$run/client" || fail "examples_client failed"
grep -q "^pi: 3\.1" "$run/client" || fail "examples_client printed $(cat "$run/client")"

cat >"$run/squares.py" <<'PYTHON'
import os
from mpigate.futures import MPIPoolExecutor

def square(x):
    return x * x, os.getpid()

with MPIPoolExecutor() as pool:
    results = list(pool.map(square, range(20), chunksize=3))
assert [value for value, _ in results] == [x * x for x in range(20)], results
assert os.getpid() not in {pid for _, pid in results}, "ran in the client"
print("squares ok")
PYTHON
[ "$(cd "$run" && /usr/bin/python3 squares.py)" = "squares ok" ] || fail "the mpigate.futures map"

if command -v node >/dev/null; then
  node "$prefix/share/nodejs/mpigate/example.js" >"$run/node" || fail "example.js: $(cat "$run/node")"
  grep -q "^echo: hello" "$run/node" || fail "example.js printed $(cat "$run/node")"
fi

mpigate shutdown >/dev/null
wait "$server" || fail "mpigate serve exited $?: $(cat "$run/err")"
rm -rf "$build" "$run"
echo "installed_smoke: ok"

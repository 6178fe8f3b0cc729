"""install_tree: mpigate's installed layout, relative to an install prefix, as one directory.

The Debian package (prefix /usr) and tools/install.sh (any prefix) both copy this tree, through
packaging/install_tree.sh, which also writes the prefix into the files that name it
(@MPIGATE_PREFIX@). ELF files are stripped of debug information. Bazel makes every output
executable, so the tree's `.executables` lists the files that are: the executables of `files`
targets (not shared objects), by their path in the tree.
"""

def _install_tree_impl(ctx):
    entries = []  # (File, destination relative to the prefix)
    executables = []
    for target, directory in ctx.attr.files.items():
        executable = target[DefaultInfo].files_to_run.executable
        for f in target[DefaultInfo].files.to_list():
            entries.append((f, directory + "/" + f.basename))
            if f == executable and not f.is_source and not f.basename.endswith(".so"):
                executables.append(directory + "/" + f.basename)
    for target, spec in ctx.attr.trees.items():
        directory, _, strip = spec.partition("=")
        found = False
        files = depset(transitive = [
            target[DefaultInfo].files,
            target[DefaultInfo].default_runfiles.files,
        ])
        for f in files.to_list():
            if f.short_path.startswith(strip + "/"):
                entries.append((f, directory + "/" + f.short_path[len(strip) + 1:]))
                found = True
        if not found:
            fail("%s has no file under %s" % (target.label, strip))
    seen = {}
    for f, destination in entries:
        if destination in seen and seen[destination] != f.path:
            fail("%s and %s both install as %s" % (seen[destination], f.path, destination))
        seen[destination] = f.path

    out = ctx.actions.declare_directory(ctx.attr.name)
    manifest = ctx.actions.declare_file(ctx.attr.name + ".manifest")
    ctx.actions.write(manifest, "".join([
        "%s\t%s\n" % (path, destination)
        for destination, path in sorted(seen.items())
    ]))
    executables_list = ctx.actions.declare_file(ctx.attr.name + ".executables")
    ctx.actions.write(executables_list, "".join([e + "\n" for e in sorted(executables)]))
    ctx.actions.run_shell(
        inputs = [f for f, _ in entries] + [manifest, executables_list],
        outputs = [out],
        command = """
set -eu
while IFS="$(printf '\\t')" read -r source destination; do
  target="$1/$destination"
  mkdir -p "$(dirname "$target")"
  if [ "$(head -c 4 "$source" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    strip --strip-debug -o "$target" "$source"
  else
    cp "$source" "$target"
  fi
done < "$2"
cp "$3" "$1/.executables"
""",
        arguments = [out.path, manifest.path, executables_list.path],
        mnemonic = "InstallTree",
        progress_message = "Laying out the installed tree %s" % out.short_path,
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

install_tree = rule(
    implementation = _install_tree_impl,
    attrs = {
        # A target's files, each installed as DIRECTORY/<basename>.
        "files": attr.label_keyed_string_dict(allow_files = True),
        # "DIRECTORY=PREFIX": a target's files and runfiles under the workspace path PREFIX, each
        # installed as DIRECTORY/<path below PREFIX> (a Python package with its generated parts).
        "trees": attr.label_keyed_string_dict(allow_files = True),
    },
)

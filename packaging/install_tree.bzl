"""install_tree: mpigate's installed layout, relative to an install prefix, as one directory.

The Debian package (prefix /usr) and tools/install.sh (any prefix) both copy this tree, through
packaging/install_tree.sh, which also writes the prefix into the files that name it
(@MPIGATE_PREFIX@). Built programs and shared objects are stripped of debug information. Bazel
makes every output executable, so the tree's `.executables` lists the files that are: the built
executables of `files` targets (not shared objects), by their path in the tree.
"""

def _install_tree_impl(ctx):
    entries = []  # (File, destination relative to the prefix)
    executables = []
    binaries = {}  # Built programs and shared objects, by path: stripped.
    for target, directory in ctx.attr.files.items():
        executable = target[DefaultInfo].files_to_run.executable
        for f in target[DefaultInfo].files.to_list():
            entries.append((f, directory + "/" + f.basename))
            if f.basename.endswith(".so") and not f.is_source:
                binaries[f.path] = True
            elif f == executable and not f.is_source:
                binaries[f.path] = True
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
        "%s\t%s\t%s\n" % (path, destination, "strip" if path in binaries else "copy")
        for destination, path in sorted(seen.items())
    ]))
    executables_list = ctx.actions.declare_file(ctx.attr.name + ".executables")
    ctx.actions.write(executables_list, "".join([e + "\n" for e in sorted(executables)]))
    ctx.actions.run_shell(
        inputs = [f for f, _ in entries] + [manifest, executables_list],
        outputs = [out],
        command = """
set -eu
made=""
while IFS="$(printf '\\t')" read -r source destination how; do
  target="$1/$destination"
  # The manifest is sorted by destination: a directory's files come together.
  if [ "${target%/*}" != "$made" ]; then made="${target%/*}"; mkdir -p "$made"; fi
  if [ "$how" = strip ]; then
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

"""python_extension: a Python extension module (a shared object) built without sanitizers.

Extensions are loaded by Debian's /usr/bin/python3, which no sanitizer instruments. An instrumented
shared object needs its sanitizer's runtime (libasan, libubsan) loaded before everything else,
which an uninstrumented interpreter does not do: it aborts as it loads the module. So the
extension's cc_binary is built in a configuration of its own in which the sanitizer flags of
.bazelrc's sanitizer configs (--copt/--linkopt -fsanitize=...) are dropped; per-target copts
cannot undo them, since the linker's driver adds the runtimes whatever comes after. Everything
else (the service, the tests' C++) stays instrumented. A shared object takes no custom malloc.
"""

def _is_sanitizer_flag(flag):
    return flag.startswith("-fsanitize") or flag.startswith("-fno-sanitize")

def _without_sanitizers_impl(settings, _attr):
    return {
        option: [flag for flag in settings[option] if not _is_sanitizer_flag(flag)]
        for option in ("//command_line_option:copt", "//command_line_option:linkopt")
    }

_without_sanitizers = transition(
    implementation = _without_sanitizers_impl,
    inputs = ["//command_line_option:copt", "//command_line_option:linkopt"],
    outputs = ["//command_line_option:copt", "//command_line_option:linkopt"],
)

def _python_extension_impl(ctx):
    module = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.symlink(output = module, target_file = ctx.file.shared_object)
    return [DefaultInfo(files = depset([module]), runfiles = ctx.runfiles(files = [module]))]

python_extension = rule(
    implementation = _python_extension_impl,
    doc = "The shared object of a cc_binary (linkshared) as a module named after this target " +
          "(e.g. \"pkg/_mod.so\"), built without sanitizers.",
    attrs = {
        "shared_object": attr.label(
            mandatory = True,
            allow_single_file = [".so"],
            cfg = _without_sanitizers,
            doc = "A cc_binary with linkshared = True.",
        ),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)

"""The host's C++ toolchain, configured by Bazel's own cc_configure, but with Debian's clang 14.

`--config=clang-tsa` (.bazelrc) builds with it, to check the ABSL_GUARDED_BY family of annotations
(clang's -Wthread-safety; GCC ignores them). A repository of its own, rather than CC=clang for
@local_config_cc, so that switching between the two builds reconfigures nothing. Fetched only
when a build names it; clang comes from tools/setup.sh.
"""

load("@bazel_tools//tools/cpp:cc_configure.bzl", "cc_autoconf_impl")

def _clang_cc_autoconf_impl(rctx):
    clang = rctx.which(rctx.attr.compiler)
    if not clang:
        fail("%s not found: run tools/setup.sh (Debian package %s)" %
             (rctx.attr.compiler, rctx.attr.debian_package))

    # cc_configure probes each flag it adds, so GCC-only ones are left out for clang.
    cc_autoconf_impl(rctx, overriden_tools = {"gcc": str(clang)})

clang_cc_autoconf = repository_rule(
    implementation = _clang_cc_autoconf_impl,
    attrs = {
        "compiler": attr.string(mandatory = True),
        "debian_package": attr.string(mandatory = True),
    },
    environ = ["PATH"],
    configure = True,
)

"""C++ code generation from .proto files with the system protoc and grpc_cpp_plugin."""

def _strip_ext(path):
    return path[:-len(".proto")]

def proto_cc_library(name, srcs, deps = [], grpc = False, import_root = "", visibility = None):
    """Generates C++ messages (and gRPC stubs if `grpc`) and wraps them in a cc_library.

    Args:
      name: the cc_library's name.
      srcs: .proto files in this package.
      deps: proto_cc_library targets whose .proto files these import.
      grpc: also generate gRPC service stubs.
      import_root: the directory, relative to the workspace, that `import` statements and the
        generated `#include`s are relative to; "" is the workspace root. Must be this package or
        one of its parents.
      visibility: of the cc_library.
    """
    package = native.package_name()
    if import_root and not (package == import_root or package.startswith(import_root + "/")):
        fail("import_root %r must contain package %r" % (import_root, package))
    root = import_root or "."

    outs = []
    for src in srcs:
        base = _strip_ext(src)
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]

    # The generated files land in $(GENDIR)/<import_root>/<path from import_root>, which is exactly
    # this package's output directory plus the path of the .proto inside the package.
    out_dir = "$(GENDIR)/" + import_root if import_root else "$(GENDIR)"
    dep_protos = [d + "_srcs" for d in deps]
    cmd = "$(location @system_tools//:protoc) -I{root} -I/usr/include --cpp_out={out}".format(
        root = root,
        out = out_dir,
    )
    tools = ["@system_tools//:protoc"]
    if grpc:
        cmd += (" --plugin=protoc-gen-grpc=$(location @system_tools//:grpc_cpp_plugin)" +
                " --grpc_out=" + out_dir)
        tools.append("@system_tools//:grpc_cpp_plugin")
    cmd += " " + " ".join(["$(location %s)" % src for src in srcs])

    native.filegroup(
        name = name + "_srcs",
        srcs = srcs + dep_protos,
        visibility = visibility,
    )
    native.genrule(
        name = name + "_gen",
        srcs = srcs + dep_protos,
        outs = outs,
        cmd = cmd,
        tools = tools,
    )

    includes = []
    if import_root:
        rel = package[len(import_root):].lstrip("/")
        includes = ["/".join([".."] * len(rel.split("/")))] if rel else ["."]
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = includes,
        deps = deps + ["@grpc"],
        visibility = visibility,
    )

# Spack recipe for mpigate. Copy this directory's package.py into a Spack repository as
# packages/mpigate/package.py (`spack repo create`, then `spack install mpigate`).
#
# Checked in this repository (tests/packaging/spack_recipe_test.py): it parses, against a stand-in
# of Spack's API; its version is the repository's VERSION; its dependencies are those
# tools/setup.sh installs for the build, with the versions the build was made with. Not checked:
# a real `spack install` (Spack is not in Debian's archive, and these machines have no internet).

from spack.package import *


class Mpigate(Package):
    """A persistent pool of MPI worker processes behind a gRPC gateway: one long-lived service in
    an HPC allocation that any number of clients (C++, Python with an mpi4py.futures-compatible
    API, Node) submit tasks to, with futures back."""

    # No public home yet: set these to where the repository is published.
    homepage = "https://example.invalid/mpigate"
    git = "https://example.invalid/mpigate.git"

    maintainers("mpigate-maintainers")

    version("0.1.0", branch="main")

    # The build: Bazel 4, offline, against system libraries found with pkg-config and mpicxx.
    depends_on("bazel@4.2", type="build")
    depends_on("pkgconfig", type="build")
    depends_on("googletest@1.12", type=("build", "test"))
    depends_on("node-js", type=("build", "run"))

    # Linked: gRPC, Protobuf and Abseil at the versions the task API's ABI is tied to, MPI (the
    # pool's; task libraries with gang functions must use the same), TCMalloc, CPython to embed.
    depends_on("mpi")
    depends_on("grpc@1.51")
    depends_on("protobuf@3.21")
    depends_on("abseil-cpp@20220623")
    depends_on("gperftools")
    depends_on("python@3.11+shared", type=("build", "link", "run"))

    # Imported by the Python client and the workers' Python runtime.
    depends_on("py-grpcio", type="run")
    depends_on("py-protobuf", type="run")
    depends_on("py-cloudpickle", type="run")
    depends_on("py-numpy", type="run")
    depends_on("py-mpi4py", type="run")

    def install(self, spec, prefix):
        # Bazel keeps its output base in the stage, and passes the build environment Spack made
        # (compilers, pkg-config and PATH of the dependencies) on to its actions.
        output_user_root = join_path(self.stage.path, "bazel")
        npm = which("npm")
        with working_dir(join_path(self.stage.source_path, "client", "node")):
            npm("ci", "--no-audit", "--no-fund", "--ignore-scripts")
        bazel = which("bazel")
        env_flags = [
            "--action_env=" + name
            for name in ("PATH", "PKG_CONFIG_PATH", "CC", "CXX", "LD_LIBRARY_PATH")
        ]
        bazel(
            "--output_user_root=" + output_user_root,
            "build",
            "-c",
            "opt",
            *env_flags,
            "//packaging:tree",
        )
        tree = join_path(self.stage.source_path, "bazel-bin", "packaging", "tree")
        installer = Executable(join_path(self.stage.source_path, "packaging", "install_tree.sh"))
        installer(tree, prefix)

    def setup_run_environment(self, env):
        env.prepend_path("PYTHONPATH", join_path(self.prefix, "lib", "python3", "dist-packages"))
        env.prepend_path("PKG_CONFIG_PATH", join_path(self.prefix, "share", "pkgconfig"))
        env.prepend_path("MANPATH", join_path(self.prefix, "share", "man"))

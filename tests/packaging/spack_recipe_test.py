"""packaging/spack/package.py, as far as it can be checked without Spack: it parses and runs its
class body against a stand-in of Spack's API (spack.package); its class follows Spack's naming;
its version is the repository's VERSION; its dependencies are the Spack names of what
tools/setup.sh installs for the build (each of setup.sh's packages must be mapped below, so a new
one cannot be forgotten), and each pinned version is the one this machine builds with.

    spack_recipe_test.py RUNFILES_ROOT
"""

import re
import subprocess
import sys
import types
import unittest

# tools/setup.sh's Debian packages -> the Spack package that stands for it (None: not a
# dependency of the installed software: the compiler, Bazel's Java rules, test-only tools).
SPACK_NAME = {
    "bazel-bootstrap": "bazel", "bazel-rules-java": None, "g++": None, "pkg-config": "pkgconfig",
    "libgrpc++-dev": "grpc", "libabsl-dev": "abseil-cpp", "libprotobuf-dev": "protobuf",
    "protobuf-compiler": "protobuf", "protobuf-compiler-grpc": "grpc",
    "libgtest-dev": "googletest", "libgmock-dev": "googletest",
    "libopenmpi-dev": "mpi", "openmpi-bin": "mpi", "libgoogle-perftools-dev": "gperftools",
    "python3-grpcio": "py-grpcio", "python3-protobuf": "py-protobuf", "python3-dev": "python",
    "libpython3.11-dev": "python", "python3-cloudpickle": "py-cloudpickle",
    "python3-numpy": "py-numpy", "python3-mpi4py": "py-mpi4py", "nodejs": "node-js",
    "npm": "node-js", "openssl": None, "iproute2": None, "dpkg-dev": None, "make": None,
    "man-db": None, "environment-modules": None, "chromium": None, "tmux": None, "clang-14": None,
}

# How this machine's version of a Spack dependency is read.
def build_version(name):
    def run(*argv):
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    return {
        "grpc": lambda: run("pkg-config", "--modversion", "grpc++"),
        "protobuf": lambda: run("pkg-config", "--modversion", "protobuf"),
        "abseil-cpp": lambda: run("pkg-config", "--modversion", "absl_base"),
        "googletest": lambda: run("pkg-config", "--modversion", "gtest"),
        "python": lambda: run("pkg-config", "--modversion", "python3-embed"),
        "bazel": lambda: run("dpkg-query", "-W", "-f", "${Version}", "bazel-bootstrap"),
    }[name]()


class Recorder:
    """What the recipe declared, through the stand-ins of Spack's directives."""

    def __init__(self):
        self.versions, self.depends, self.maintainers = [], {}, []

    def module(self):
        recorder = self
        package = types.ModuleType("spack.package")

        class Package:  # pylint: disable=too-few-public-methods
            pass

        package.Package = Package
        package.version = lambda v, **kwargs: recorder.versions.append(v)
        package.maintainers = lambda *names: recorder.maintainers.extend(names)

        def depends_on(spec, type=("build", "link"), when=None):  # pylint: disable=redefined-builtin
            name = re.match(r"[a-z0-9-]+", spec).group(0)
            if name in recorder.depends:
                raise AssertionError(f"{name} declared twice")
            recorder.depends[name] = spec

        package.depends_on = depends_on
        for helper in ("join_path", "which", "working_dir", "Executable"):
            setattr(package, helper, lambda *args, **kwargs: None)
        package.__all__ = [n for n in dir(package) if not n.startswith("_")]
        return package


class SpackRecipeTest(unittest.TestCase):
    root = None

    def setUp(self):
        self.recorder = Recorder()
        spack = types.ModuleType("spack")
        spack.package = self.recorder.module()
        sys.modules["spack"], sys.modules["spack.package"] = spack, spack.package
        path = f"{self.root}/packaging/spack/package.py"
        with open(path, encoding="utf-8") as recipe:
            self.namespace = {"__name__": "mpigate_recipe"}
            exec(compile(recipe.read(), path, "exec"), self.namespace)  # pylint: disable=exec-used

    def test_class_follows_spack_naming(self):
        recipe = self.namespace["Mpigate"]
        self.assertTrue(issubclass(recipe, sys.modules["spack.package"].Package))
        self.assertTrue(recipe.__doc__ and recipe.homepage and recipe.git)
        for method in ("install", "setup_run_environment"):
            self.assertTrue(callable(getattr(recipe, method)), method)
        self.assertTrue(self.recorder.maintainers)

    def test_version_is_the_repositorys(self):
        with open(f"{self.root}/VERSION", encoding="utf-8") as version:
            self.assertEqual(self.recorder.versions, [version.read().strip()])

    def test_dependencies_are_the_builds(self):
        with open(f"{self.root}/tools/setup.sh", encoding="utf-8") as setup:
            text = setup.read()
        listed = re.search(r"^packages=\(\n(.*?)^\)", text, re.MULTILINE | re.DOTALL).group(1)
        debian = set(listed.split()) | set(re.findall(r"packages\+=\(([a-z0-9.+-]+)\)", text))
        unmapped = debian - set(SPACK_NAME)
        self.assertFalse(unmapped, "tools/setup.sh installs packages this test has no Spack "
                                   f"name for: {sorted(unmapped)}")
        wanted = {SPACK_NAME[name] for name in debian} - {None}
        self.assertEqual(set(self.recorder.depends), wanted)

    def test_pinned_versions_are_the_builds(self):
        pinned = {name: re.search(r"@([0-9.]+)", spec).group(1)
                  for name, spec in self.recorder.depends.items() if "@" in spec}
        self.assertTrue(pinned)
        for name, version in pinned.items():
            with self.subTest(name):
                self.assertTrue(build_version(name).startswith(version),
                                f"{name}@{version}, but the build has {build_version(name)}")


if __name__ == "__main__":
    SpackRecipeTest.root = sys.argv.pop(1)
    unittest.main()

"""Whether an installed package declares what it needs: prints every shared library its ELF files
load and every Python module its package imports that comes from a Debian package outside the
closure of its Depends (or from none), and exits 1 if there is one.

    /usr/bin/python3 dependency_closure.py PACKAGE PYTHON_MODULE...

Run where the package is installed; alternatives (a | b) count when installed, virtual packages
through their providers.
"""

import os
import re
import subprocess
import sys


def installed():
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Depends}, ${Pre-Depends}\t${Provides}\n"],
        capture_output=True, text=True, check=True).stdout
    depends, providers = {}, {}
    for line in out.splitlines():
        name, deps, provides = line.split("\t")
        depends[name] = [[re.split(r"[ :(]", alt.strip())[0] for alt in dep.split("|")]
                         for dep in deps.split(",") if dep.strip()]
        for virtual in provides.split(","):
            if virtual.strip():
                providers.setdefault(re.split(r"[ (]", virtual.strip())[0], []).append(name)
    return depends, providers


def closure(package, depends, providers):
    seen, todo = set(), [package]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for alternatives in depends.get(name, []):
            for alt in alternatives:
                todo += [p for p in [alt] + providers.get(alt, []) if p in depends]
    return seen


def owners(paths):
    """The packages that own each path, from one dpkg -S for all of them."""
    candidates = {}
    for path in paths:
        real = os.path.realpath(path)
        # Merged /usr: dpkg may know a library by its /lib or its /usr/lib path.
        names = {path, real}
        for name in (path, real):
            if name.startswith("/usr/lib/"):
                names.add(name[len("/usr"):])
            elif name.startswith("/lib"):
                names.add("/usr" + name)
        candidates[path] = names
    out = subprocess.run(["dpkg", "-S", *sorted(set().union(*candidates.values()))],
                         capture_output=True, text=True).stdout
    owned = {}
    for line in out.splitlines():
        packages, _, name = line.partition(": ")
        owned.setdefault(name, set()).update(
            p.strip().split(":")[0] for p in packages.split(","))
    return {path: set().union(*(owned.get(n, set()) for n in names))
            for path, names in candidates.items()}


def main(package, modules):
    depends, providers = installed()
    needed = closure(package, depends, providers)
    files = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True,
                           check=True).stdout.split()
    libraries = set()
    for path in files:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
            if "not found" in ldd:
                print(f"{path}: a library is not found:\n{ldd}")
                return 1
            libraries.update(m.group(1) for m in re.finditer(r"=> (/\S+)", ldd))
    probe = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
             "print('\\n'.join(getattr(m, '__file__', None) or '' for m in sys.modules.values()))")
    def module_files(code):
        return set(subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True,
                                  text=True, check=True, cwd="/").stdout.split())
    # Less what the interpreter imports by itself (site, .pth files of other packages).
    imported = module_files(probe) - module_files(probe.split("\n", 1)[0] + "\n" +
                                                  probe.rsplit("\n", 1)[1])
    missing = 0
    for path, owned_by in owners(sorted(libraries) + sorted(set(imported))).items():
        if not owned_by & needed:
            print(f"{path}: from {sorted(owned_by) or 'no package'}, outside {package}'s Depends")
            missing += 1
    print(f"{len(libraries)} libraries and {len(set(imported))} Python modules checked")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))

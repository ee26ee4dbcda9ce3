"""check_install.py BUILD_DIR PREFIX -- `meson install` into a staging directory,
then import the installed package with a fresh python3 and use it.

Checks that the package lands in a directory this interpreter searches
(so `import libmtl` works after a real install), that every module of
lib/python/libmtl is installed, and that the recorded libdir holds the
library.  Prints "N passed, N failed" like the C harness."""

import glob
import os
import subprocess
import sys
import tempfile

build, prefix = sys.argv[1], sys.argv[2]
src_pkg = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib", "python",
                       "libmtl")
failures, passes = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    (passes if cond else failures).append(what)


with tempfile.TemporaryDirectory() as stage:
    subprocess.run(["meson", "install", "-C", build, "--destdir", stage, "--no-rebuild",
                    "--quiet"], check=True, stdout=subprocess.DEVNULL)
    inits = glob.glob(os.path.join(stage, "**", "libmtl", "__init__.py"), recursive=True)
    check(len(inits) == 1, f"one installed package (found {inits})")
    pkg = os.path.dirname(inits[0])
    site_dir = os.path.dirname(pkg)
    real_site = "/" + os.path.relpath(site_dir, stage)
    if prefix in ("/usr", "/usr/local"):  # a custom prefix needs PYTHONPATH anyway
        check(real_site in sys.path, f"{real_site} is on {sys.executable}'s sys.path")
    else:
        check(real_site.startswith(prefix), f"{real_site} is under the prefix {prefix}")
    wanted = sorted(os.path.basename(p) for p in glob.glob(os.path.join(src_pkg, "*.py")))
    have = sorted(os.path.basename(p) for p in glob.glob(os.path.join(pkg, "*.py")))
    check(set(wanted) <= set(have),
          f"every module installed (missing: {sorted(set(wanted) - set(have))})")

    ns = {}
    with open(os.path.join(pkg, "_install_paths.py")) as f:
        exec(f.read(), ns)
    lib = os.path.join(stage + ns["LIBDIR"], "libmtl.so.0")
    check(os.path.exists(lib), f"_install_paths.LIBDIR holds libmtl.so.0 ({ns['LIBDIR']})")

    code = ("import libmtl, numpy as np\n"
            "assert libmtl.__file__.startswith(%r), libmtl.__file__\n"
            "assert libmtl.missing_functions == (), libmtl.missing_functions\n"
            "m = libmtl.Model(3); m.add_trunk_layer(4); m.add_task('y'); m.finalize()\n"
            "print(m.predict(np.ones((2, 3), np.float32)).shape)\n" % stage)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MTL_LIBRARY")}
    env.update(PYTHONPATH=site_dir, MTL_LIBRARY=lib, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       cwd=stage)
    check(r.returncode == 0 and r.stdout.strip() == "(2, 1)",
          f"the installed package imports and predicts ({r.stdout.strip()} {r.stderr.strip()})")

    # Without MTL_LIBRARY the package loads the library from the recorded
    # libdir (rewritten here to point into the staging directory).
    with open(os.path.join(pkg, "_install_paths.py"), "w") as f:
        f.write(f"LIBDIR = {stage + ns['LIBDIR']!r}\n")
    del env["MTL_LIBRARY"]
    r = subprocess.run([sys.executable, "-c", "import libmtl; print(libmtl.library_path)"],
                       env=env, capture_output=True, text=True, cwd=stage)
    check(r.returncode == 0 and r.stdout.strip() == lib,
          f"found through _install_paths.LIBDIR ({r.stdout.strip()} {r.stderr.strip()})")

print(f"{len(passes)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)

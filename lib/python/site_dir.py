"""Print the directory to install the libmtl package into, for meson.

Usage: site_dir.py PREFIX FALLBACK

The first entry of this interpreter's own search path that lies under
PREFIX/lib (so /usr/local/lib/python3.11/dist-packages for Debian's python3
and the default prefix /usr/local); FALLBACK (meson's choice) when none
does.  meson's get_install_dir() alone gives /usr/local/lib/python3/
dist-packages on Debian 12, which that python3 does not search.
"""
import os
import site
import sys

prefix, fallback = os.path.normpath(sys.argv[1]), sys.argv[2]
candidates = site.getsitepackages() + sys.path
for path in candidates:
    path = os.path.normpath(path)
    rel = os.path.relpath(path, prefix)
    if rel.startswith("lib") and path.endswith(("site-packages", "dist-packages")):
        print(path)
        break
else:
    print(fallback)

"""Shared helpers of the Python binding tests."""

import os
import re
import unittest

import numpy as np

import libmtl

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("MTL_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
HEADER = os.path.join(SOURCE_ROOT, "include", "mtl.h")
HELPER = os.environ.get("MTL_TEST_HELPER")  # tests/python/mtl_pyhelper, built by meson
DATA_CSV = os.path.join(SOURCE_ROOT, "examples", "data", "cycloadd_features.csv.gz")


def needs(*functions):
    """Skip a test (or class) when the loaded library lacks a C function:
    a development build with parts of the API still missing.  (test_header
    fails on any missing function, so nothing is skipped silently for
    good.)"""
    missing = [f for f in functions if f in libmtl.missing_functions]
    return unittest.skipIf(bool(missing), "library lacks " + ", ".join(missing))


MODEL_FUNCS = ("mtl_model_create", "mtl_model_add_trunk_layer", "mtl_model_add_task",
               "mtl_model_finalize")
DATA_FUNCS = ("mtl_dataset_create",)
TRAINER_FUNCS = MODEL_FUNCS + ("mtl_trainer_create", "mtl_trainer_step")
FIT_FUNCS = TRAINER_FUNCS + DATA_FUNCS + ("mtl_trainer_fit", "mtl_model_fit_scalers")


def toy_data(n=96, d=5, seed=0, missing=0.0):
    """Two related regression targets of d float32 features (x C-contiguous).
    With `missing` > 0, that fraction of the labels is NaN."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = np.empty((n, 2), dtype=np.float32)
    y[:, 0] = 3.0 * np.tanh(x @ w) + 10.0
    y[:, 1] = 2.0 * np.tanh(x @ w) - x[:, 0] ** 2
    if missing:
        y[rng.random(size=y.shape) < missing] = np.nan
    return x, y


def tiny_model(d=5, context=None, hidden=16):
    """Trunk (hidden, tanh); tasks 'a' (head 8 relu) and 'b'; finalized."""
    m = libmtl.Model(d, context=context)
    m.add_trunk_layer(hidden, "tanh")
    a = m.add_task("a")
    m.add_head_layer(a, 8, "relu")
    m.add_task("b")
    m.finalize()
    return m


# ---- mtl.h parsing ----------------------------------------------------------

def header_text():
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)   # block comments
    return re.sub(r"//[^\n]*", " ", text)                 # line comments


def header_functions():
    """{name: (return type, [parameter types])} of every MTL_API declaration."""
    text = header_text()
    out = {}
    for m in re.finditer(r"^\s*MTL_API\s+([^;]*?)\(([^;]*?)\)\s*;", text, flags=re.M):
        head, params = " ".join(m.group(1).split()), " ".join(m.group(2).split())
        name = re.search(r"([A-Za-z_]\w*)\s*$", head).group(1)
        ret = head[: -len(name)].strip()
        types = []
        if params != "void":
            for p in params.split(","):
                p = p.strip()
                pname = re.search(r"([A-Za-z_]\w*)\s*$", p).group(1)
                types.append(" ".join(p[: -len(pname)].replace("*", " * ").split()))
        out[name] = (" ".join(ret.replace("*", " * ").split()), types)
    return out


def header_defines():
    """{NAME: int value} of the integer #defines (MTL_VERSION_NUMBER evaluated)."""
    text = header_text().replace("\\\n", " ")
    values = {}
    for m in re.finditer(r"^\s*#define\s+(MTL_\w+)\s+(.+?)\s*$", text, flags=re.M):
        name, expr = m.group(1), m.group(2)
        expr = re.sub(r"(\d+)u\b", r"\1", expr)
        try:
            values[name] = eval(expr, {"__builtins__": {}}, dict(values))
        except Exception:
            pass  # not an integer constant (MTL_API, MTL_ALLOCATOR_INIT, ...)
    return values


def header_enums():
    """{C enum type name: {ENUMERATOR: value}}."""
    text = header_text()
    defines = header_defines()
    enums = {}
    for m in re.finditer(r"typedef\s+enum\s+(\w+)\s*\{(.*?)\}\s*\w+\s*;", text, flags=re.S):
        members, nxt, env = {}, 0, dict(defines)
        for item in m.group(2).split(","):
            item = item.strip()
            if not item:
                continue
            if "=" in item:
                name, expr = (s.strip() for s in item.split("=", 1))
                nxt = eval(expr, {"__builtins__": {}}, env)
            else:
                name = item
            members[name] = nxt
            env[name] = nxt
            nxt += 1
        enums[m.group(1)] = members
    return enums

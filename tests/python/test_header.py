"""The binding against include/mtl.h: every MTL_API function declared with
matching ctypes types, every enum and #define mirrored with the same value,
and every function present in the loaded library."""

import os
import re
import unittest
from ctypes import (POINTER, c_char, c_char_p, c_double, c_float, c_int, c_int64, c_size_t,
                    c_uint, c_uint8, c_void_p)

import libmtl
from libmtl import _capi, enums

from support import (SOURCE_ROOT, header_defines, header_enums, header_functions,
                     header_text)

SCALARS = {"int": c_int, "unsigned": c_uint, "int64_t": c_int64, "size_t": c_size_t,
           "float": c_float, "double": c_double, "uint8_t": c_uint8, "char": c_char}
CALLBACKS = {"mtl_log_fn": _capi.LOG_FN, "mtl_progress_fn": _capi.PROGRESS_FN}
STRUCTS = {"mtl_allocator": _capi.Allocator}

# C enum -> (Python mirror, prefix its C names carry)
ENUM_MIRRORS = {
    "mtl_status": (libmtl.Status, ("MTL_ERR_", "MTL_")),
    "mtl_option": (libmtl.Option, ("MTL_OPT_",)),
    "mtl_task_option": (libmtl.TaskOption, ("MTL_TASK_OPT_",)),
    "mtl_log_level": (libmtl.LogLevel, ("MTL_LOG_",)),
    "mtl_activation": (libmtl.Activation, ("MTL_ACT_",)),
    "mtl_init": (libmtl.Init, ("MTL_INIT_",)),
    "mtl_task_type": (libmtl.TaskType, ("MTL_TASK_",)),
    "mtl_loss": (libmtl.Loss, ("MTL_LOSS_",)),
    "mtl_metric": (libmtl.Metric, ("MTL_METRIC_",)),
    "mtl_optimizer": (libmtl.Optimizer, ("MTL_OPTIMIZER_",)),
    "mtl_schedule": (libmtl.Schedule, ("MTL_SCHEDULE_",)),
    "mtl_weighting": (libmtl.Weighting, ("MTL_WEIGHTING_",)),
    "mtl_split": (libmtl.Split, ("MTL_SPLIT_",)),
    "mtl_diagnostic": (libmtl.Diagnostic, ("MTL_DIAG_",)),
    "mtl_scope": (libmtl.Scope, ("MTL_SCOPE_",)),
}


def opaque_handles():
    return set(re.findall(r"typedef\s+struct\s+(\w+)\s+\1\s*;", header_text()))


def expected_ctype(ctype, enum_names, handles):
    """The ctypes type a C type must be declared as."""
    words = ctype.replace("const", " ").split()
    base, stars = words[0], words.count("*")
    if stars == 0:
        if base == "void":
            return None
        if base in SCALARS:
            return SCALARS[base]
        if base in enum_names:
            return c_int
        if base in CALLBACKS:
            return CALLBACKS[base]
        raise AssertionError(f"unmapped C type {ctype!r}")
    if base == "char":
        inner = c_char_p
    elif base == "void" or base in handles:
        inner = c_void_p
    elif base in STRUCTS:
        return POINTER(STRUCTS[base]) if stars == 1 else None
    elif base in SCALARS:
        inner = POINTER(SCALARS[base])
    elif base in enum_names:
        inner = POINTER(c_int)
    else:
        raise AssertionError(f"unmapped C type {ctype!r}")
    for _ in range(stars - 1):
        inner = POINTER(inner)
    return inner


class HeaderFunctions(unittest.TestCase):
    def setUp(self):
        self.decl = header_functions()
        self.enum_names = set(header_enums())
        self.handles = opaque_handles()

    def test_header_parsed(self):
        # A sanity floor so a broken parser cannot make the others vacuous.
        self.assertGreater(len(self.decl), 90)
        self.assertIn("mtl_model_predict", self.decl)
        self.assertEqual({"mtl_context", "mtl_model", "mtl_dataset", "mtl_trainer",
                          "mtl_workspace"}, self.handles)

    def test_every_function_declared_once_and_only_header_ones(self):
        self.assertEqual(sorted(self.decl), sorted(_capi.PROTOTYPES),
                         "PROTOTYPES in libmtl/_capi.py and MTL_API functions in mtl.h differ")

    def test_declared_types_match_header(self):
        bad = []
        for name, (ret, params) in self.decl.items():
            restype, argtypes = _capi.PROTOTYPES.get(name, (None, None))
            if argtypes is None:
                continue  # reported by the test above
            want_ret = expected_ctype(ret, self.enum_names, self.handles)
            if restype is not want_ret:
                bad.append(f"{name}: returns {restype}, header says {ret!r} -> {want_ret}")
            if len(argtypes) != len(params):
                bad.append(f"{name}: {len(argtypes)} argtypes, header has {len(params)}")
                continue
            for i, (got, ctype) in enumerate(zip(argtypes, params)):
                want = expected_ctype(ctype, self.enum_names, self.handles)
                if got is not want:
                    bad.append(f"{name} arg {i}: {got}, header says {ctype!r} -> {want}")
        self.assertEqual(bad, [])

    def test_bound_functions_carry_the_declarations(self):
        for name, (restype, argtypes) in _capi.PROTOTYPES.items():
            if name in libmtl.missing_functions:
                continue
            f = getattr(_capi.C, name)
            self.assertIs(f.restype, restype, name)
            self.assertEqual(list(f.argtypes), list(argtypes), name)

    def test_callback_types_match_typedefs(self):
        text = header_text()
        for cname, cfunc in CALLBACKS.items():
            m = re.search(r"typedef\s+([\w\s\*]+?)\s*\(\s*\*\s*" + cname + r"\s*\)\s*\(([^)]*)\)",
                          text)
            self.assertIsNotNone(m, cname)
            want_ret = expected_ctype(" ".join(m.group(1).split()), self.enum_names, self.handles)
            params = [" ".join(re.sub(r"\w+\s*$", "", p.strip()).replace("*", " * ").split())
                      for p in m.group(2).split(",")]
            self.assertIs(cfunc._restype_, want_ret, cname)
            self.assertEqual(list(cfunc._argtypes_),
                             [expected_ctype(p, self.enum_names, self.handles) for p in params],
                             cname)

    def test_allocator_struct_fields(self):
        m = re.search(r"typedef\s+struct\s+mtl_allocator\s*\{(.*?)\}", header_text(), re.S)
        names = []
        for field in filter(str.strip, m.group(1).split(";")):
            fn = re.search(r"\(\s*\*\s*(\w+)\s*\)", field)  # function pointer
            names.append(fn.group(1) if fn else re.search(r"(\w+)\s*$", field).group(1))
        self.assertEqual(names, [n for n, _ in _capi.Allocator._fields_])

    def test_docs_map_every_function(self):
        with open(os.path.join(SOURCE_ROOT, "docs", "python.md"), encoding="utf-8") as f:
            doc = f.read()
        self.assertEqual([n for n in self.decl if f"`{n}`" not in doc], [],
                         "docs/python.md's function table lacks these")

    def test_library_exports_every_function(self):
        # Fails while parts of the C API are still missing (as the C
        # 'exports' test does); tests needing them are skipped meanwhile.
        self.assertEqual(list(libmtl.missing_functions), [])


class HeaderConstants(unittest.TestCase):
    def test_enums_mirror_header(self):
        c_enums = header_enums()
        self.assertEqual(sorted(c_enums), sorted(ENUM_MIRRORS),
                         "a C enum has no Python mirror (add it to enums.py and ENUM_MIRRORS)")
        for cname, (pyenum, prefixes) in ENUM_MIRRORS.items():
            expected = {}
            for member, value in c_enums[cname].items():
                prefix = next(p for p in prefixes if member.startswith(p))
                expected[member[len(prefix):]] = value
            actual = {m.name: m.value for m in pyenum}
            self.assertEqual(actual, expected, cname)

    def test_defines_mirror_header(self):
        d = header_defines()
        self.assertEqual(enums.VERSION_MAJOR, d["MTL_VERSION_MAJOR"])
        self.assertEqual(enums.VERSION_MINOR, d["MTL_VERSION_MINOR"])
        self.assertEqual(enums.VERSION_PATCH, d["MTL_VERSION_PATCH"])
        self.assertEqual(enums.VERSION_NUMBER, d["MTL_VERSION_NUMBER"])
        self.assertEqual(enums.OPTTYPE_I64, d["MTL_OPTTYPE_I64"])
        self.assertEqual(enums.OPTTYPE_F64, d["MTL_OPTTYPE_F64"])
        self.assertEqual(libmtl.LAYER_NORM, d["MTL_LAYER_NORM"])
        self.assertEqual(libmtl.DATASET_COPY, d["MTL_DATASET_COPY"])
        self.assertEqual(libmtl.CSV_DROP_INCOMPLETE, d["MTL_CSV_DROP_INCOMPLETE"])
        flags = {k for k in d if not k.startswith(("MTL_VERSION_", "MTL_OPTTYPE_"))}
        self.assertEqual(flags, {"MTL_LAYER_NORM", "MTL_DATASET_COPY",
                                 "MTL_CSV_DROP_INCOMPLETE"},
                         "a new #define in mtl.h needs a mirror in enums.py")

    def test_status_texts_come_from_the_library(self):
        for s in libmtl.Status:
            self.assertEqual(libmtl.status_string(s),
                             _capi.C.mtl_status_string(int(s)).decode())
        self.assertEqual(libmtl.status_string(999), "unknown status")


if __name__ == "__main__":
    unittest.main()

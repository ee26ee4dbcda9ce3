#!/usr/bin/env python3
"""bench_torch.py -- the benchmark's workloads in PyTorch, next to libmtl (issue 9).

Runs W1/W2/W3 (see tests/bench/bench.c and docs/performance.md) in PyTorch
with the same timing method as the C benchmark (per figure: warm-up, then
the median of --samples samples, each >= --min-ms of back-to-back calls)
and, given --bench PATH, runs the libmtl benchmark in the same run and
prints libmtl/PyTorch ratios.

Optional: exits 77 (meson's "skipped") when /usr/bin/python3 cannot import
torch (Debian: apt-get install python3-torch).  Debian's torch calls BLIS
through libblas.so.3, so each thread count runs in a child process with
torch.set_num_threads(n) *and* BLIS_NUM_THREADS=n, and with the kernel set
(BLIS_ARCH_TYPE) the libmtl benchmark reports, so both use the same kernels.

    /usr/bin/python3 tests/bench/bench_torch.py --bench build/tests/bench/bench
"""
import argparse
import json
import os
import subprocess
import sys
import time

WORKLOADS = {  # name: (inputs, trunk1, trunk2, tasks, head units, batch)
    "W1": (16, 64, 64, 3, 32, 64),
    "W2": (256, 512, 512, 4, 128, 256),
    "W3": (2048, 1024, 1024, 2, 256, 512),
}
MEASURES = ("train_step", "infer_rows_per_s", "predict_b1")
INFER_ROWS, INFER_CHUNK = 65536, 8192
SKIP = 77


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


CLOCK = time.perf_counter  # or time.thread_time with --clock cpu (1 thread)


def time_per_call(fn, samples, min_s):
    """Median seconds per call: calibrate (also the warm-up), then samples of >= min_s."""
    reps = 1
    while True:
        t0 = CLOCK()
        for _ in range(reps):
            fn()
        t = CLOCK() - t0
        if t >= min_s:
            break
        reps = int(reps * min(100.0, max(2.0, min_s * 1.25 / max(t, 1e-9)))) + 1
    out = []
    for _ in range(samples):
        done, t0 = 0, CLOCK()
        while True:
            for _ in range(reps):
                fn()
            done += reps
            t = CLOCK() - t0
            if t >= min_s:
                break
        out.append(t / done)
    return median(out)


def worker(args):
    """Child process: one thread count, every chosen workload and measure."""
    import torch
    from torch import nn

    nt = args.worker
    global CLOCK
    if args.clock == "cpu" and nt == 1:
        CLOCK = time.thread_time
    torch.set_num_threads(nt)
    torch.manual_seed(7)
    blis_loaded = False
    try:
        with open("/proc/self/maps") as f:
            blis_loaded = "blis" in f.read()
    except OSError:
        pass

    for wname in args.workload.split(","):
        d, h1, h2, tasks, h, batch = WORKLOADS[wname]
        trunk = nn.Sequential(nn.Linear(d, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU())
        heads = nn.ModuleList(
            [nn.Sequential(nn.Linear(h2, h), nn.ReLU(), nn.Linear(h, 1)) for _ in range(tasks)])
        params = list(trunk.parameters()) + list(heads.parameters())
        opt = torch.optim.Adam(params, lr=1e-3)
        weights = [1.0] * tasks
        x = torch.rand(batch, d) * 0.2 - 0.1
        y = torch.rand(batch, tasks) * 0.2 - 0.1
        figures = {}

        if "train_step" in args.measure:
            def step():
                opt.zero_grad(set_to_none=False)
                z = trunk(x)
                loss = 0.0
                for t in range(tasks):
                    pred = heads[t](z).squeeze(1)
                    loss = loss + weights[t] * torch.nn.functional.mse_loss(pred, y[:, t])
                loss.backward()
                opt.step()
            figures["train_step"] = (time_per_call(step, args.samples, args.min_ms * 1e-3) * 1e6, "us")

        if "infer_rows_per_s" in args.measure:
            xi = torch.rand(INFER_ROWS, d) * 0.2 - 0.1
            out = torch.empty(INFER_ROWS, tasks)

            def infer():
                with torch.inference_mode():
                    for c in range(0, INFER_ROWS, INFER_CHUNK):
                        z = trunk(xi[c:c + INFER_CHUNK])
                        out[c:c + INFER_CHUNK] = torch.cat([hd(z) for hd in heads], 1)
            s = time_per_call(infer, args.samples, args.min_ms * 1e-3)
            figures["infer_rows_per_s"] = (INFER_ROWS / s, "rows/s")

        if "predict_b1" in args.measure:
            x1 = x[:1].clone()

            def predict1():
                with torch.inference_mode():
                    z = trunk(x1)
                    return torch.cat([hd(z) for hd in heads], 1)
            figures["predict_b1"] = (time_per_call(predict1, args.samples, args.min_ms * 1e-3) * 1e6, "us")

        for m, (v, unit) in figures.items():
            print(json.dumps({"workload": wname, "threads": nt, "measure": m, "torch": v, "unit": unit,
                              "torch_version": torch.__version__, "blis_loaded": blis_loaded}), flush=True)
    return 0


def json_lines(text):
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", help="path of the libmtl benchmark program (tests/bench/bench)")
    ap.add_argument("--workload", default="W1,W2,W3")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--measure", default=",".join(MEASURES))
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--min-ms", type=float, default=25.0)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time 1-thread figures in thread CPU time (a busy machine)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.measure = [m for m in args.measure.split(",") if m in MEASURES]
    for w in args.workload.split(","):
        if w not in WORKLOADS:
            ap.error("unknown workload %r" % w)

    if args.worker:
        return worker(args)

    try:
        import torch  # noqa: F401  (only to know whether to skip)
    except ImportError:
        print("SKIP: this python (%s) cannot import torch; install python3-torch" % sys.executable)
        return SKIP

    libmtl = {}
    arch_id, arch = os.environ.get("BLIS_ARCH_TYPE"), "?"
    if args.bench:
        cmd = [args.bench, "--json-only", "--workload", args.workload, "--threads", args.threads,
               "--measure", ",".join(args.measure), "--samples", str(args.samples),
               "--min-ms", str(args.min_ms), "--clock", args.clock]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, universal_newlines=True, check=True)
        for rec in json_lines(res.stdout):
            if "blis_arch_id" in rec:
                arch, arch_id = rec["blis_arch"], arch_id or str(rec["blis_arch_id"])
            elif "measure" in rec:
                libmtl[(rec["workload"], rec["threads"], rec["measure"])] = rec

    rows = []
    for nt in [int(t) for t in args.threads.split(",")]:
        env = dict(os.environ, BLIS_NUM_THREADS=str(nt), OMP_NUM_THREADS=str(nt))
        if arch_id is not None:
            env["BLIS_ARCH_TYPE"] = arch_id
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(nt), "--workload", args.workload,
               "--measure", ",".join(args.measure), "--samples", str(args.samples),
               "--min-ms", str(args.min_ms), "--clock", args.clock]
        res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, universal_newlines=True, check=True)
        rows.extend(r for r in json_lines(res.stdout) if "torch" in r)

    print("PyTorch %s vs libmtl, BLIS kernels '%s' (BLIS_ARCH_TYPE=%s)%s" % (
        rows[0]["torch_version"] if rows else "?", arch, arch_id if arch_id is not None else "unset",
        "" if not rows or rows[0]["blis_loaded"] else "  [warning: torch did not load BLIS]"))
    print("ratio = libmtl / PyTorch (time: < 1 is faster; rows/s: > 1 is faster)")
    for r in rows:
        key = (r["workload"], r["threads"], r["measure"])
        lib = libmtl.get(key)
        rec = {"workload": r["workload"], "threads": r["threads"], "measure": r["measure"],
               "torch": round(r["torch"], 4), "unit": r["unit"]}
        line = "  %-3s %dt %-17s torch %12.2f %-6s" % (r["workload"], r["threads"], r["measure"], r["torch"],
                                                        r["unit"])
        if lib:
            rec["libmtl"] = lib["libmtl"]
            rec["floor"] = lib["floor"]
            rec["libmtl_over_torch"] = round(lib["libmtl"] / r["torch"], 4)
            rec["torch_over_floor"] = round(r["torch"] / lib["floor"], 4)
            line += " libmtl %12.2f  libmtl/torch %6.3f  torch/floor %6.3f" % (
                lib["libmtl"], rec["libmtl_over_torch"], rec["torch_over_floor"])
        print(line)
        print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())

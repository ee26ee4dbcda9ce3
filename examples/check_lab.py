#!/usr/bin/env python3
"""Run examples/lab.c the way a lab would and check what it prints.

    check_lab.py LAB_EXECUTABLE DATA_DIR [--epochs N]

Separate processes, as in real use: `lab train` on DATA_DIR/arrhenius_train.csv
into a temporary directory, then `lab predict` and `lab info` on the saved
model.  Checks: the predictions of the rows inside the training domain are
within TOLERANCE (in ln k) of the exact Arrhenius laws the data were made from;
exactly the rows outside the domain are flagged, naming the right inputs;
task names, units and metadata come back from the file; and bad input gives a
clean message and exit status 1.  Standard library only.
"""
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))
import make_arrhenius_csv as gen  # noqa: E402  (the laws the data were made from)

# |ln k_predicted - ln k_exact| allowed for rows inside the domain.  The data
# carry 3% noise; a model trained for the test's epochs is typically within 0.05.
TOLERANCE = 0.15

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(args, expect_rc=0):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != expect_rc:
        print(p.stdout)
        print(p.stderr, file=sys.stderr)
    check(p.returncode == expect_rc, "%s exits with %d (got %d)" % (" ".join(args[1:3]), expect_rc,
                                                                    p.returncode))
    return p


def new_rows(path):
    """(T, polarity, cat) of each data row of the new-conditions CSV."""
    import csv
    with open(path, newline="") as f:
        return [(float(r["T_K"]), float(r["polarity"]), float(r["cat_mol_percent"]))
                for r in csv.DictReader(f)]


def main():
    lab, data_dir = sys.argv[1], sys.argv[2]
    epochs = sys.argv[sys.argv.index("--epochs") + 1] if "--epochs" in sys.argv else "200"
    train_csv = os.path.join(data_dir, "arrhenius_train.csv")
    new_csv = os.path.join(data_dir, "arrhenius_new.csv")

    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "rates.mtl")
        p = run([lab, "train", train_csv, model, "--epochs", epochs])
        print(p.stdout, end="")
        check(os.path.exists(model), "the model file exists")
        check("labels: k_AB 454 k_BC 409 k_AD 281" in p.stdout, "missing labels counted per task")

        # A second process: everything it knows comes from the file.
        p = run([lab, "predict", model, new_csv])
        print(p.stdout, end="")
        out = p.stdout.splitlines()
        check(any("provenance: trained by examples/lab.c" in l for l in out), "provenance read back")
        header = [l for l in out if l.lstrip().startswith("row")]
        check(len(header) == 1 and all(s in header[0] for s in
                                       ("T_K [K]", "k_AB [1/s]", "k_BC [1/s]", "k_AD [1/s]")),
              "table header has task names and units")
        rows = [l.split() for l in out if l[:4].strip().isdigit()]
        truth = new_rows(new_csv)
        check(len(rows) == len(truth) == 8, "one line per new row")
        for i, (fields, (T, pol, cat)) in enumerate(zip(rows, truth)):
            inside_truth = 300 <= T <= 420 and 0.099 <= pol <= 1.0 and 0.5 <= cat <= 5.0
            flagged = "OUTSIDE" in fields
            check(flagged == (not inside_truth), "row %d %s the training domain" %
                  (i + 1, "outside" if flagged else "inside"))
            if inside_truth:
                for t, law in enumerate(gen.LAWS):
                    k = float(fields[4 + t])
                    err = abs(math.log(k) - gen.ln_k(law, T, pol, cat))
                    check(err < TOLERANCE, "row %d %s: |ln error| %.3f < %.2f" % (i + 1, law[0], err,
                                                                                  TOLERANCE))
        line = {int(f[0]): " ".join(f) for f in rows}
        check("T_K = 450" in line.get(6, ""), "row 6 names T_K")
        check("polarity = 0.009" in line.get(7, ""), "row 7 names polarity")
        check("(2 inputs)" in line.get(8, "") and "cat_mol_percent = 10" in line.get(8, ""),
              "row 8 names two inputs")

        p = run([lab, "info", model])
        check("input.T_K.unit: K" in p.stdout and "validation.k_AD:" in p.stdout, "info lists metadata")

        # Failures are reported, not crashed on.
        p = run([lab, "predict", os.path.join(tmp, "missing.mtl"), new_csv], expect_rc=1)
        check("loading the model" in p.stderr, "a missing model file is reported: " + p.stderr.strip())
        p = run([lab, "predict", model, train_csv.replace("train", "nonexistent")], expect_rc=1)
        check("reading the new rows" in p.stderr, "a missing CSV is reported: " + p.stderr.strip())
        bad = os.path.join(tmp, "bad.csv")
        with open(bad, "w") as f:
            f.write("T_K,polarity\n350,0.3\n")
        p = run([lab, "predict", model, bad], expect_rc=1)
        check("cat_mol_percent" in p.stderr, "a missing column is named: " + p.stderr.strip())

    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write the synthetic lab data sets used by examples/lab.c.

    python3 examples/data/make_arrhenius_csv.py [OUT_DIR]

writes OUT_DIR/arrhenius_train.csv (500 experiments) and
OUT_DIR/arrhenius_new.csv (8 new conditions, three of them outside the
training data).  OUT_DIR defaults to this script's directory, where the
committed copies live; the output is the same bytes on every run.

The chemistry is the batch reactor of examples/simulator.c: three
first-order steps A -> B, B -> C and A -> D whose rate constants follow

    ln k = ln A - Ea / (R T) + s * polarity + n * ln(cat)

with the same constants as laws[] in simulator.c.  `polarity` is the
solvent's normalised Reichardt parameter E_T^N (tabulated values below) and
`cat` the catalyst loading in mol%.  Each measured k carries a 3% log-normal
error, and not every step was measured in every experiment (empty cells):
k_AB in 90% of the rows, k_BC in 80%, k_AD in 60%.  Standard library only.
"""
import math
import os
import random
import sys

GAS_R = 8.314462618  # J/(mol K)

# (column, ln A [ln(1/s)], Ea [J/mol], polarity slope, catalyst order) -- as simulator.c
LAWS = [
    ("k_AB", 25.0, 85.0e3, 1.0, 1.0),
    ("k_BC", 20.0, 75.0e3, -0.5, 0.5),
    ("k_AD", 30.0, 105.0e3, 0.3, 0.0),
]
MEASURED_FRACTION = {"k_AB": 0.9, "k_BC": 0.8, "k_AD": 0.6}
NOISE_LN = 0.03  # standard deviation of ln k measurement error

# Reichardt's E_T^N (Chem. Rev. 1994, 94, 2319)
SOLVENTS = [
    ("toluene", 0.099), ("THF", 0.207), ("ethyl acetate", 0.228), ("DCM", 0.309),
    ("acetone", 0.355), ("DMF", 0.386), ("acetonitrile", 0.460), ("2-propanol", 0.546),
    ("ethanol", 0.654), ("methanol", 0.762), ("water", 1.000),
]
CATALYST_LOADINGS = [0.5, 1.0, 2.0, 2.5, 5.0]  # mol%
T_SETPOINTS = range(300, 421, 5)  # K

TRAIN_HEADER = ["experiment_id", "solvent", "T_K", "polarity", "cat_mol_percent",
                "k_AB", "k_BC", "k_AD", "notes"]
NEW_HEADER = ["experiment_id", "solvent", "T_K", "polarity", "cat_mol_percent", "notes"]


def ln_k(law, T, polarity, cat):
    _, ln_a, ea, slope, order = law
    return ln_a - ea / (GAS_R * T) + slope * polarity + order * math.log(cat)


def csv_field(text):
    """RFC 4180 quoting when needed."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(csv_field(str(v)) for v in row) + "\n")


def training_rows(rng, n):
    notes = ["", "", "", "", "repeat", "new catalyst batch, same supplier", 'stirring "high"']
    rows = []
    # Corners first, so the data cover the whole box the lab sampled.
    corners = [(300, SOLVENTS[0], 0.5), (420, SOLVENTS[-1], 5.0)]
    for i in range(n):
        if i < len(corners):
            T, (solvent, pol), cat = corners[i]
            T = float(T)
        else:
            T = rng.choice(T_SETPOINTS) + rng.uniform(-0.3, 0.3)  # a controller's error
            solvent, pol = rng.choice(SOLVENTS)
            cat = rng.choice(CATALYST_LOADINGS)
        ks = []
        for law in LAWS:
            if i >= len(corners) and rng.random() > MEASURED_FRACTION[law[0]]:
                ks.append("")  # not measured: a missing label
            else:
                k = math.exp(ln_k(law, T, pol, cat) + rng.gauss(0.0, NOISE_LN))
                ks.append("%.4g" % k)
        rows.append(["EXP-%04d" % (i + 1), solvent, "%.1f" % T, "%.3f" % pol, "%g" % cat]
                    + ks + [rng.choice(notes)])
    return rows


def new_rows():
    # (solvent, E_T^N, T, cat, note): the last three leave the training data
    plan = [
        ("DCM", 0.309, 350.0, 1.0, "planned run"),
        ("ethanol", 0.654, 322.5, 2.0, "planned run"),
        ("acetonitrile", 0.460, 398.0, 0.5, "planned run"),
        ("toluene", 0.099, 305.0, 5.0, "planned run"),
        ("water", 1.000, 415.0, 2.5, "planned run"),
        ("DMF", 0.386, 450.0, 1.0, "hotter than any training run"),
        ("hexane", 0.009, 340.0, 1.0, "solvent less polar than any trained"),
        ("methanol", 0.762, 470.0, 10.0, "hot, and twice the highest loading"),
    ]
    return [["NEW-%02d" % (i + 1), s, "%.1f" % T, "%.3f" % pol, "%g" % cat, note]
            for i, (s, pol, T, cat, note) in enumerate(plan)]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(20240607)
    write(os.path.join(out_dir, "arrhenius_train.csv"), TRAIN_HEADER, training_rows(rng, 500))
    write(os.path.join(out_dir, "arrhenius_new.csv"), NEW_HEADER, new_rows())


if __name__ == "__main__":
    main()

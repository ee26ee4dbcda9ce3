#!/usr/bin/env python3
"""Train the cycloaddition multi-task model from Python and plot it.

Data: 5,269 [3+2] cycloadditions (examples/data/README.md), 1,042 reaction
features, two targets in kcal/mol -- the barrier G_act and the reaction
energy G_r -- with a fixed train / validation / test split.  The model is
the C demo's (examples/cycloadd_demo.c): a shared trunk 1042 -> 512 -> 256
(ReLU, dropout 0.1) and one head of 64 ReLU units per target, AdamW,
early stopping on the validation loss.

Writes three PNG files into --out:
  curves.png       per-task training and validation loss, and validation MAE,
                   per epoch (the best epoch marked)
  parity.png       predicted vs true on the test split, per task
  grad_cosine.png  cosine between the two tasks' gradients on the shared
                   representation: every step, and the mean of each epoch
                   (from the trainer's diagnostics)

    python3 examples/python/cycloadd_plots.py [--out DIR] [--epochs N] [--quick]

Needs the libmtl package (installed, or lib/python on PYTHONPATH with
MTL_LIBRARY pointing at the built libmtl.so.0), numpy and matplotlib
(Debian: python3-numpy, python3-matplotlib).
"""

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

import matplotlib
matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

import libmtl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "data", "cycloadd_features.csv.gz")
TARGETS = ["G_act", "G_r"]
UNIT = "kcal/mol"
# Test MAE of predicting the training mean (examples/data/README.md): any
# trained model must do better.
MEAN_BASELINE = {"G_act": 7.52, "G_r": 16.97}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default="cycloadd_plots", help="directory for the PNG files")
    p.add_argument("--epochs", type=int, default=300, help="maximum epochs")
    p.add_argument("--patience", type=int, default=25, help="early-stopping patience")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="BLIS threads")
    p.add_argument("--weighting", default="fixed",
                   help="loss weighting: " + ", ".join(w.name.lower() for w in libmtl.Weighting))
    p.add_argument("--save", help="also save the trained model to this file")
    p.add_argument("--quick", action="store_true",
                   help="small settings for the test suite: a narrow trunk, a few epochs")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless the plots exist and the test MAE beats the mean baseline")
    return p.parse_args()


def load(path):
    """(features, split column, data set of all rows) from the CSV file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    features = [c for c in header if c not in ["idx", "split"] + TARGETS]
    split = libmtl.Dataset.load_csv(path, ["split"]).inputs()[:, 0].astype(int)
    data = libmtl.Dataset.load_csv(path, features, TARGETS)
    return features, split, data


def build_model(n_features, args, context):
    m = libmtl.Model(n_features, context=context)
    trunk = (64,) if args.quick else (512, 256)
    for units in trunk:
        m.add_trunk_layer(units, "relu", dropout=0.1)
    for name in TARGETS:
        t = m.add_task(name)
        m.add_head_layer(t, 16 if args.quick else 64, "relu")
        m.set_task_text(t, unit=UNIT, description=f"{name} of the [3+2] cycloaddition")
    return m.finalize()


class History:
    """What the progress callback records, per step and per epoch."""

    def __init__(self):
        self.train, self.val, self.val_mae, self.cos_epoch, self.weights = [], [], [], [], []
        self.cos_step, self.step_at = [], []

    def __call__(self, tr, epoch, step):
        if step >= 0:  # every step (callback_every_steps = 1)
            self.cos_step.append(tr.diagnostic("grad_cosine", "step")[0, 1])
            self.step_at.append(step)
            return False
        self.train.append(tr.epoch_losses("train"))
        self.val.append(tr.epoch_losses("validation"))
        self.val_mae.append(tr.epoch_metric("mae", "validation"))
        self.cos_epoch.append(tr.diagnostic("grad_cosine", "epoch")[0, 1])
        self.weights.append(tr.diagnostic("task_weights", "epoch"))
        if epoch % 10 == 0 or epoch == 1:
            mae = " ".join(f"{n} {v:.2f}" for n, v in zip(TARGETS, self.val_mae[-1]))
            print(f"epoch {epoch:3d}  val MAE {mae} {UNIT}  cos {self.cos_epoch[-1]:+.3f}",
                  flush=True)
        return False


def save(fig, path):
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def plot_curves(h, best_epoch, path):
    epochs = np.arange(1, len(h.train) + 1)
    train, val, mae = np.array(h.train), np.array(h.val), np.array(h.val_mae)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, layout="constrained")
    for t, name in enumerate(TARGETS):
        ax = axes[0, t]
        ax.plot(epochs, train[:, t], label="training")
        ax.plot(epochs, val[:, t], label="validation")
        ax.set_yscale("log")
        ax.set_title(f"{name}: loss (standardised units)")
        ax.legend()
        ax = axes[1, t]
        ax.plot(epochs, mae[:, t], color="C2")
        ax.set_title(f"{name}: validation MAE ({UNIT}; predicting the mean: "
                     f"{MEAN_BASELINE[name]})", fontsize="medium")
        ax.set_xlabel("epoch")
        for row in axes[:, t]:
            row.axvline(best_epoch, color="k", ls="--", lw=0.8)
            row.grid(alpha=0.3)
    fig.suptitle(f"Training curves (dashed: best epoch {best_epoch}, weights restored)")
    save(fig, path)


def plot_parity(y_true, y_pred, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2), layout="constrained")
    for t, (name, ax) in enumerate(zip(TARGETS, axes)):
        yt, yp = y_true[:, t], y_pred[:, t]
        mae = np.mean(np.abs(yp - yt))
        r2 = 1 - np.sum((yp - yt) ** 2) / np.sum((yt - yt.mean()) ** 2)
        lo, hi = min(yt.min(), yp.min()), max(yt.max(), yp.max())
        pad = 0.05 * (hi - lo)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8)
        ax.scatter(yt, yp, s=8, alpha=0.5)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {name} ({UNIT})")
        ax.set_ylabel(f"predicted {name} ({UNIT})")
        ax.set_title(f"{name}: test MAE {mae:.2f} {UNIT}, R² {r2:.3f}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Parity on the test split ({len(y_true)} reactions)")
    save(fig, path)


def plot_cosine(h, steps_per_epoch, path):
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    steps = np.array(h.step_at) / steps_per_epoch  # in epochs
    ax.plot(steps, h.cos_step, ".", ms=2, alpha=0.3, color="C0", label="each step")
    ax.plot(np.arange(1, len(h.cos_epoch) + 1), h.cos_epoch, "-o", ms=3, color="C3",
            label="epoch mean")
    ax.axhline(0, color="k", lw=0.8)
    # Symmetric about 0 (the sign is what matters), zoomed to the data: a
    # cosine is in [-1, 1], but between tasks it is often close to 0.
    values = np.abs(np.concatenate([h.cos_step, h.cos_epoch]))
    values = values[np.isfinite(values)]
    lim = min(1.05, max(0.05, 1.15 * values.max())) if values.size else 1.05
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cos(∇G_act, ∇G_r) on the shared representation")
    ax.set_title("Task-gradient cosine (> 0: the tasks pull the trunk the same way)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save(fig, path)


def main():
    args = parse_args()
    if args.quick:
        args.epochs = min(args.epochs, 4)
    os.makedirs(args.out, exist_ok=True)
    ctx = libmtl.Context(seed=args.seed, num_threads=args.threads)

    t0 = time.perf_counter()
    features, split, data = load(args.data)
    train, val, test = (data.view(np.flatnonzero(split == s)) for s in (0, 1, 2))
    print(f"{len(data)} reactions, {len(features)} features: {len(train)} train, "
          f"{len(val)} validation, {len(test)} test ({time.perf_counter() - t0:.1f} s to load)")

    model = build_model(len(features), args, ctx)
    model.feature_names = features
    model.fit_scalers(train)
    history = History()
    batch = 128
    with libmtl.Trainer(model, max_batch=batch, optimizer="adamw", learning_rate=1e-3,
                        weight_decay=1e-4, batch_size=batch, epochs=args.epochs,
                        early_stop_patience=args.patience, weighting=args.weighting,
                        diagnostics=True, callback_every_steps=1) as tr:
        tr.fit(train, val, callback=history)
        best_epoch, _ = tr.best_epoch()
        seconds = tr.elapsed_seconds

    test_mae = model.evaluate(test, "mae")
    y_pred = model.predict(test.inputs())
    y_true = test.targets()
    for name, mae in zip(TARGETS, test_mae):
        print(f"test MAE {name}: {mae:.3f} {UNIT}")
    print(f"{len(history.train)} epochs, best {best_epoch}, {seconds:.1f} s training")

    plots = {k: os.path.join(args.out, f"{k}.png") for k in ("curves", "parity", "grad_cosine")}
    plot_curves(history, best_epoch, plots["curves"])
    plot_parity(y_true, y_pred, plots["parity"])
    plot_cosine(history, -(-len(train) // batch), plots["grad_cosine"])
    print("wrote " + ", ".join(plots.values()))

    if args.save:
        model.metadata.update({
            "units": UNIT,
            "description": "G_act and G_r of [3+2] cycloadditions",
            "provenance": "examples/python/cycloadd_plots.py"})
        model.save(args.save)
        print(f"saved {args.save}")

    print(json.dumps({"example": "cycloadd_plots", "test_mae": dict(zip(TARGETS, test_mae)),
                      "epochs": len(history.train), "best_epoch": best_epoch,
                      "seconds": round(seconds, 2)}))

    if args.check:
        problems = [f"{p} missing or empty" for p in plots.values()
                    if not os.path.exists(p) or os.path.getsize(p) < 1000]
        problems += [f"test MAE {n} {v:.2f} not below the mean baseline {MEAN_BASELINE[n]}"
                     for n, v in zip(TARGETS, test_mae) if not v < MEAN_BASELINE[n]]
        problems += ["gradient cosines not finite or outside [-1, 1]"
                     for c in [np.array(history.cos_step + history.cos_epoch)]
                     if len(c) == 0 or not np.all(np.abs(c) <= 1 + 1e-9)]
        for p in problems:
            print("CHECK FAILED: " + p, file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

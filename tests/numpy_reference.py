#!/usr/bin/python3
"""numpy_reference.py -- an independent implementation of the libmtl network.

Runs the dumper (tests/test_network_numpy.c) into a temporary directory,
then recomputes from the dumped definition, parameters and batch -- in
float64, one task at a time, with whole-batch numpy matrix products and a
hand-written backward pass (no fusion, no shared code with the library) --
the predictions, the embedding, every task's loss and the gradient of the
weighted loss, and compares them with what libmtl computed in float32:
|libmtl - numpy| <= 1e-5 |numpy| + 1e-5 max|numpy| for every array.

Usage: numpy_reference.py DUMPER.  Exit 77 (skip) without numpy.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("numpy not available: skipped")
    sys.exit(77)

IDENTITY, RELU, LEAKY, TANH, SIGMOID, GELU, SOFTPLUS = range(7)
REGRESSION, BINARY, MULTICLASS = 1, 2, 3
MSE, MAE, HUBER, BCE, CE = 1, 2, 3, 4, 5
GELU_C = np.sqrt(2.0 / np.pi)


def act(a, u):
    if a == IDENTITY:
        return u
    if a == RELU:
        return np.maximum(u, 0.0)
    if a == LEAKY:
        return np.where(u > 0, u, 0.01 * u)
    if a == TANH:
        return np.tanh(u)
    if a == SIGMOID:
        return 1.0 / (1.0 + np.exp(-u))
    if a == GELU:
        return 0.5 * u * (1.0 + np.tanh(GELU_C * (u + 0.044715 * u ** 3)))
    if a == SOFTPLUS:
        return np.logaddexp(0.0, u)
    raise ValueError(a)


def act_grad(a, u):
    if a == IDENTITY:
        return np.ones_like(u)
    if a == RELU:
        return (u > 0).astype(float)
    if a == LEAKY:
        return np.where(u > 0, 1.0, 0.01)
    if a == TANH:
        return 1.0 - np.tanh(u) ** 2
    if a == SIGMOID:
        s = 1.0 / (1.0 + np.exp(-u))
        return s * (1.0 - s)
    if a == GELU:
        inner = GELU_C * (u + 0.044715 * u ** 3)
        t = np.tanh(inner)
        return 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_C * (1.0 + 3 * 0.044715 * u * u)
    if a == SOFTPLUS:
        return 1.0 / (1.0 + np.exp(-u))
    raise ValueError(a)


class Layer:
    """A dense layer whose parameters are views of the flat buffer."""

    def __init__(self, prefix, fan_in, fan_out, activation, norm, transposed, blocks):
        self.prefix, self.act, self.norm, self.transposed = prefix, activation, norm, transposed
        self.fan_in, self.fan_out = fan_in, fan_out
        off, r, c = blocks[prefix + ".weight"]
        assert (r, c) == ((fan_out, fan_in) if transposed else (fan_in, fan_out)), (prefix, r, c)
        self.blocks = blocks

    def params(self, P):
        off, r, c = self.blocks[self.prefix + ".weight"]
        W = P[off:off + r * c].reshape(r, c)
        W = W.T if self.transposed else W
        b = P[self.blocks[self.prefix + ".bias"][0]:][:self.fan_out]
        if not self.norm:
            return W, b, None, None
        g = P[self.blocks[self.prefix + ".norm.gain"][0]:][:self.fan_out]
        s = P[self.blocks[self.prefix + ".norm.shift"][0]:][:self.fan_out]
        return W, b, g, s

    def forward(self, P, X):
        W, b, g, s = self.params(P)
        a = X @ W + b
        self.X = X
        if self.norm:
            mu = a.mean(axis=1, keepdims=True)
            var = ((a - mu) ** 2).mean(axis=1, keepdims=True)
            self.rstd = 1.0 / np.sqrt(var + 1e-5)
            self.xh = (a - mu) * self.rstd
            u = g * self.xh + s
        else:
            u = a
        self.u = u
        return act(self.act, u)

    def backward(self, P, G, dh):
        """Accumulate parameter gradients into G; return dL/dX."""
        W, b, g, s = self.params(P)
        du = dh * act_grad(self.act, self.u)
        if self.norm:
            self._add(G, ".norm.gain", (du * self.xh).sum(axis=0))
            self._add(G, ".norm.shift", du.sum(axis=0))
            dxh = du * g
            da = self.rstd * (dxh - dxh.mean(axis=1, keepdims=True)
                              - self.xh * (dxh * self.xh).mean(axis=1, keepdims=True))
        else:
            da = du
        dW = self.X.T @ da
        self._add(G, ".weight", (dW.T if self.transposed else dW).ravel())
        self._add(G, ".bias", da.sum(axis=0))
        return da @ W.T

    def _add(self, G, suffix, v):
        off = self.blocks[self.prefix + suffix][0]
        G[off:off + v.size] += v


def task_loss(task, logits, y, obs, w):
    """Weighted mean over observed labels, and its gradient on the logits."""
    ttype, loss, delta = task["type"], task["loss"], task["delta"]
    if ttype == MULTICLASS:
        o = obs[:, 0] * w
        W = o.sum()
        if W <= 0:
            return 0.0, np.zeros_like(logits)
        c = np.where(obs[:, 0] > 0, np.nan_to_num(y[:, 0]), 0).astype(int)
        mx = logits.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
        prob = np.exp(logits - lse[:, None])
        onehot = np.zeros_like(logits)
        onehot[np.arange(len(c)), c] = 1.0
        L = (o * (lse - logits[np.arange(len(c)), c])).sum() / W
        return L, (prob - onehot) * o[:, None] / W
    o = obs * w[:, None]
    W = o.sum()
    if W <= 0:
        return 0.0, np.zeros_like(logits)
    yy = np.nan_to_num(y)
    r = logits - yy
    if ttype == BINARY:
        l = np.maximum(logits, 0) - logits * yy + np.log1p(np.exp(-np.abs(logits)))
        d = 1.0 / (1.0 + np.exp(-logits)) - yy
    elif loss == MSE:
        l, d = r * r, 2 * r
    elif loss == MAE:
        l, d = np.abs(r), np.sign(r)
    elif loss == HUBER:
        quad = np.abs(r) <= delta
        l = np.where(quad, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
        d = np.where(quad, r, delta * np.sign(r))
    else:
        raise ValueError(loss)
    return (o * l).sum() / W, o * d / W


def load(d, name, dtype, shape=None):
    a = np.fromfile(os.path.join(d, name), dtype=dtype)
    return a.reshape(shape) if shape is not None else a


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.argv[1], d], check=True)
        return check_dir(d)


def check_dir(d):
    spec = [line.split() for line in open(os.path.join(d, "spec.txt"))]
    kv = {s[0]: int(s[1]) for s in spec if len(s) == 2}
    n_in, n, TW, OW, NP, E = kv["inputs"], kv["rows"], kv["targets"], kv["outputs"], kv["params"], kv["embedding"]
    blocks = {s[1]: (int(s[2]), int(s[3]), int(s[4])) for s in spec if s[0] == "block"}
    trunk, tasks, fan = [], [], n_in
    for s in spec:
        if s[0] == "trunk":
            trunk.append(Layer("trunk.%d" % len(trunk), fan, int(s[1]), int(s[2]), int(s[3]), False, blocks))
            fan = int(s[1])
        elif s[0] == "task":
            tasks.append(dict(name=s[1], type=int(s[2]), k=int(s[3]), loss=int(s[4]), weight=float(s[5]),
                              delta=float(s[6]), tcol=int(s[7]), ocol=int(s[8]), hidden=[]))
        elif s[0] == "head":
            tasks[-1]["hidden"].append((int(s[1]), int(s[2]), int(s[3])))
    assert fan == E
    for t in tasks:  # each head: hidden layers, then the identity output layer
        layers, prev = [], E
        for j, (units, a, norm) in enumerate(t["hidden"]):
            layers.append(Layer("task.%s.hidden.%d" % (t["name"], j), prev, units, a, norm, j == 0, blocks))
            prev = units
        layers.append(Layer("task.%s.out" % t["name"], prev, t["k"], IDENTITY, 0, not t["hidden"], blocks))
        t["layers"] = layers
    # The blocks tile the buffer exactly.
    spans = sorted((o, o + r * c) for o, r, c in blocks.values())
    assert spans[0][0] == 0 and spans[-1][1] == NP and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))

    P = load(d, "params.f32", np.float32).astype(np.float64)
    failures = 0
    for scen in ("plain", "masked"):
        x = load(d, "x." + scen, np.float32, (n, n_in)).astype(np.float64)
        y = load(d, "y." + scen, np.float32, (n, TW)).astype(np.float64)
        mask = load(d, "mask." + scen, np.uint8, (n, TW))
        w = load(d, "w." + scen, np.float32).astype(np.float64)
        obs = ((mask != 0) & ~np.isnan(y)).astype(np.float64)

        h = x
        for L in trunk:
            h = L.forward(P, h)
        z = h
        out = np.zeros((n, OW))
        G = np.zeros(NP)
        dz = np.zeros_like(z)
        losses = []
        for t in tasks:
            a = z
            for L in t["layers"]:
                a = L.forward(P, a)
            k, tc, oc = t["k"], t["tcol"], t["ocol"]
            if t["type"] == REGRESSION:
                out[:, oc:oc + k] = a
            elif t["type"] == BINARY:
                out[:, oc:oc + k] = 1.0 / (1.0 + np.exp(-a))
            else:
                e = np.exp(a - a.max(axis=1, keepdims=True))
                out[:, oc:oc + k] = e / e.sum(axis=1, keepdims=True)
            cols = 1 if t["type"] == MULTICLASS else k
            Lt, dlog = task_loss(t, a, y[:, tc:tc + cols], obs[:, tc:tc + cols], w)
            losses.append(Lt)
            da = t["weight"] * dlog
            for L in reversed(t["layers"]):
                da = L.backward(P, G, da)
            dz += da  # each task's own gradient on the shared representation
        for L in reversed(trunk):
            dz = L.backward(P, G, dz)

        got = {
            "out": load(d, "out." + scen, np.float32, (n, OW)),
            "emb": load(d, "emb." + scen, np.float32, (n, E)),
            "losses": load(d, "losses." + scen, np.float64),
            "grads": load(d, "grads." + scen, np.float32),
        }
        ref = {"out": out, "emb": z, "losses": np.array(losses), "grads": G}
        for key in ("out", "emb", "losses", "grads"):
            g, r = got[key].astype(np.float64).ravel(), ref[key].ravel()
            tol = 1e-5 * np.abs(r) + 1e-5 * np.abs(r).max()
            err = np.abs(g - r)
            worst = int(np.argmax(err - tol))
            ok = bool(np.all(err <= tol))
            print("%-6s %-6s max |diff| %.3g (scale %.3g) %s" % (scen, key, err.max(), np.abs(r).max(),
                                                               "ok" if ok else "MISMATCH"))
            if not ok:
                failures += 1
                where = block_of(blocks, worst) if key == "grads" else ""
                print("   worst element %d %s: libmtl %.9g numpy %.9g" % (worst, where, g[worst], r[worst]))
    print("%d passed, %d failed" % (8 - failures, failures))
    return 1 if failures else 0


def block_of(blocks, i):
    for name, (o, r, c) in blocks.items():
        if o <= i < o + r * c:
            return "(%s)" % name
    return ""


if __name__ == "__main__":
    sys.exit(main())

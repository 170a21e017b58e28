"""The main job: train a network end to end and report per-epoch loss and accuracy.

Default: an MLP on scikit-learn's bundled 8x8 digits (no download), minibatch SGD with momentum.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import gpunn
from gpunn.layers import Dense, Dropout, Flatten, Sequential
from gpunn.losses import SoftmaxCrossEntropy


def load_digits_split(seed: int = 0, test_fraction: float = 0.2):
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # the demo extra brings it
        raise SystemExit("the digits demo needs scikit-learn: pip install 'gpunn[demo]'") from exc
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def build_mlp() -> Sequential:
    return Sequential([Flatten(), Dense(128, activation="relu", kernel_initializer="he_normal"), Dropout(0.1),
                       Dense(64, activation="relu", kernel_initializer="he_normal"), Dense(10)])


def sgd_momentum_step(model: Sequential, velocity: dict, lr: float, momentum: float) -> None:
    """A minimal SGD with momentum (PyTorch's form: v = mu*v + g; p -= lr*v)."""
    for i, p in enumerate(model.parameters()):
        v = velocity.setdefault(i, p.data * 0)
        v *= momentum
        v += p.grad
        p.data -= lr * v


def evaluate(model: Sequential, loss: SoftmaxCrossEntropy, x, y, batch_size: int = 512) -> tuple[float, float]:
    total, correct = 0.0, 0
    be = gpunn.get_backend()
    for i in range(0, len(x), batch_size):
        logits = model.forward(x[i:i + batch_size], training=False)
        total += loss.forward(logits, y[i:i + batch_size]) * len(logits)
        correct += int((be.to_numpy(logits).argmax(axis=1) == y[i:i + batch_size]).sum())
    return total / len(x), correct / len(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpunn train", description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default=None)
    args = parser.parse_args(argv)
    if args.backend:
        gpunn.set_backend(args.backend)
    gpunn.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_digits_split(args.seed)
    model, loss = build_mlp(), SoftmaxCrossEntropy()
    rng = np.random.default_rng(args.seed)
    velocity: dict = {}
    be = gpunn.get_backend()
    print(f"backend: {be.name}; digits: {len(x_train)} train, {len(x_test)} test")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        seen, total, correct = 0, 0.0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            model.zero_grad()
            logits = model.forward(x_train[idx], training=True)
            total += loss.forward(logits, y_train[idx]) * len(idx)
            correct += int((be.to_numpy(logits).argmax(axis=1) == y_train[idx]).sum())
            seen += len(idx)
            model.backward(loss.backward())
            sgd_momentum_step(model, velocity, args.lr, 0.9)
        val_loss, val_acc = evaluate(model, loss, x_test, y_test)
        print(f"epoch {epoch:2d}/{args.epochs}  loss {total / seen:.4f}  acc {correct / seen:.4f}  "
              f"test_loss {val_loss:.4f}  test_acc {val_acc:.4f}")
    _, test_acc = evaluate(model, loss, x_test, y_test)
    print(f"final test accuracy: {test_acc:.4f}  ({time.perf_counter() - start:.1f} s)")
    return 0

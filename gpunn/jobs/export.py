"""The export job: a saved model as an ONNX file that ONNX Runtime runs.

    python -m gpunn export runs/lenet5/best.safetensors --onnx lenet5.onnx [--opset 17]

The checkpoint is loaded with gpunn.load_model (which validates it as untrusted input: only
registered classes are built, the checksum and every tensor are checked) without its optimizer,
then written by gpunn.io.onnx.export_onnx. A bad option (an --opset out of range, an --onnx that
is a folder) is a usage error: one line naming the option, exit status 2. A checkpoint that does
not load, or a model that cannot be exported, is one line on stderr and exit status 1.
"""
from __future__ import annotations

import argparse
import os
import sys

from gpunn.io import CheckpointError, load_model
from gpunn.io.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, OnnxExportError, export_onnx


def _opset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {text!r}") from None
    if not MIN_OPSET <= value <= MAX_OPSET:
        raise argparse.ArgumentTypeError(f"must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gpunn export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a model file written by model.save or ModelCheckpoint")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="the ONNX file to write")
    parser.add_argument("--opset", type=_opset, default=DEFAULT_OPSET,
                        help=f"the ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if os.path.isdir(args.onnx):
        parser.error(f"argument --onnx: {args.onnx} is a folder, not a file")
    parent = os.path.dirname(args.onnx) or "."
    if not os.path.isdir(parent):
        parser.error(f"argument --onnx: the folder {parent} does not exist")
    try:
        model = load_model(args.checkpoint, compile=False, restore_rng=False)
    except (CheckpointError, OSError, ValueError, TypeError) as exc:
        print(f"error: {args.checkpoint}: {exc}", file=sys.stderr)
        return 1
    try:
        path = export_onnx(model, args.onnx, opset=args.opset)
    except (OnnxExportError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} (opset {args.opset}) from {args.checkpoint}")
    return 0

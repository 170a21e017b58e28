"""Runnable jobs behind `python -m gpunn ...` (gpunn/cli.py dispatches to them).

- train.py: `python -m gpunn train`, the main job: a zoo model on a data set, checkpoints and curves;
- bench.py: `python -m gpunn bench`, the suites in bench/ and their report (the PyTorch peers run
  under --python, else $GPUNN_PEER_PYTHON, else this interpreter when it has torch);
- export.py: `python -m gpunn export CHECKPOINT --onnx OUT`, a saved model to ONNX;
- arguments.py: the argument types the jobs share.

The jobs sit above the gpunn package itself and may import any of it; nothing in gpunn imports them
except gpunn/cli.py.
"""

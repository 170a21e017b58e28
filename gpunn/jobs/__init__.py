"""Runnable jobs behind `python -m gpunn ...`."""

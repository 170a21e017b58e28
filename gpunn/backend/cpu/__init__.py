"""The CPU backend: NumpyBackend and what makes it fast.

- backend.py: NumpyBackend, the generic ops plus CPU fast paths (non-overlapping max-pool, batch
  norm with its ReLU, ReLU, 2-D matmul, Adam), each split over gpunn's CPU threads;
- conv.py: its convolution at stride 1 (the "frame" layout; FrameConvOps, mixed into NumpyBackend);
- threads.py: gpunn's CPU threads (`parallel_for`, `set_num_threads`, GPUNN_NUM_THREADS), holding
  BLAS to one thread inside a split op;
- jit.py: every numba kernel (the optional `cpu-jit` extra), each with a NumPy fallback; numba is
  imported on first use, never at `import gpunn`.

It imports gpunn.backend.base and .ops below it, and gpunn._checks; never CuPy.
"""

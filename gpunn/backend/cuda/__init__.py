"""The CUDA kernel path, shared by CuPy and the emulator: the kernels in kernels/*.cu, their
launchers, and the two backends that run them.

- kernel_ops.py: KernelOpsMixin, the per-op switch: an op with a kernel runs it unless switched
  off (`use_kernels`) or given a dtype the kernels do not cover, else the generic op of ops/; it
  also holds the dropout generator's device state (`philox_state`) and reseeds it in manual_seed;
- launchers.py: one launcher per kernel; checks every argument, sizes the grid, passes each
  scalar as the exact type the kernel declares (conv_launch.py, gemm_launch.py and
  dropout_launch.py hold the families with their own heuristics or state);
- source.py: where the .cu sources live (the checkout's kernels/ or a wheel's gpunn/_kernels/),
  KERNEL_FAMILIES, and the lazy per-backend cache of compiled modules;
- cupy_backend.py: CupyBackend (CuPy arrays, kernels through cupy.RawModule and NVRTC);
- emulated.py: EmulatedBackend (NumPy arrays, the same kernels through gpunn.emu on the CPU).

Nothing here runs at `import gpunn`: CuPy and the emulator are imported when their backend is
chosen. It imports gpunn.backend.base and .ops below it, gpunn.emu, gpunn.errors and gpunn._checks.
"""

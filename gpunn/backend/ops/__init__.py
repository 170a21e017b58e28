"""The generic heavy ops, one family per module, written once against `self.xp`: activation,
conv (im2col / col2im), dense, dropout (and the Philox stream the CUDA dropout kernel draws),
geometry (output sizes and window arithmetic), norm, optim (the Adam step over flat buffers), pool.

Each module holds a mixin; `Backend` (in ../base.py) combines them. A device backend with a
custom kernel overrides the op by name, so the generic version stays the reference: each
module's docstring is the contract (shapes, dtypes, layouts, ties) its kernels must match.
Pure `xp` (and NumPy for host-side constants): they import only each other, nothing else of gpunn.
"""

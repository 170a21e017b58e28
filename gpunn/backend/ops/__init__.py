"""The generic heavy ops, one family per module, written once against `self.xp`.

Each module holds a mixin; `Backend` (in ../base.py) combines them. A device backend with a
custom kernel overrides the op by name, so the generic version stays the reference.
"""

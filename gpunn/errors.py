"""Exceptions gpunn raises on purpose."""


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run on this machine; the message names the missing piece."""

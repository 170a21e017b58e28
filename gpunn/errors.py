"""Exceptions gpunn raises on purpose."""


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run on this machine; the message names the missing piece."""


class DistributedError(RuntimeError):
    """The process group cannot be joined, or the ranks disagree (different models, missing MPI)."""


class DistributedTimeoutError(DistributedError):
    """A collective did not complete within the group's timeout: a rank died, hung or stopped calling it."""

"""Exceptions gpunn raises on purpose."""


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run on this machine; the message names the missing piece."""


class DistributedError(RuntimeError):
    """The process group cannot be joined, or the ranks disagree (different models, missing MPI)."""


class DistributedTimeoutError(DistributedError):
    """A collective did not complete within the group's timeout: a rank died, hung or stopped calling it."""


class GraphCaptureError(RuntimeError):
    """Something a captured step (a CUDA graph) cannot hold was done while capturing: a host read of
    device memory, a host-to-device copy, a library call the driver refuses in capture; the message
    names the op."""

"""Run :mod:`sds_audio.batch` runs as Ray tasks on an existing cluster (optional extra ``ray``).

Each task is one whole (prompt, seed) run: :func:`sds_audio.batch.execute` on a worker
node, in a temporary directory there, returning the run's files to the driver, which
writes them into the library. So the nodes need sds-audio (and the prior's weights)
installed, but no shared filesystem. Ray's own task retries are off (``max_retries=0``):
the batch driver counts attempts itself, the same way for the local pool and for Ray.

Ray is imported lazily; without it the error names the extra to install.
"""

from __future__ import annotations

import socket
from typing import Any

from .errors import SDSAudioError

CONNECT_TIMEOUT_S = 5.0


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise SDSAudioError("--ray needs Ray: pip install 'sds-audio[ray]' (or pip install 'ray[default]')") \
            from exc
    return ray


def _check_reachable(address: str) -> None:
    """SDSAudioError unless something listens at ``HOST:PORT`` (``ray.init`` would retry for minutes)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SDSAudioError(f"--ray {address!r} is not auto or the HOST:PORT of a Ray cluster "
                            "(e.g. --ray 10.0.0.5:6379)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise SDSAudioError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with "
                            "`ray start --head` on the head node or check the address") from exc


def connect(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` (``auto`` or ``HOST:PORT``).

    A process that already called ``ray.init`` (a test's local cluster, a notebook) keeps
    its connection. Errors (no Ray installed, nothing at the address) are SDSAudioErrors.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SDSAudioError(f"cannot connect to the Ray cluster at {address}: {first}; start one with "
                            "`ray start --head`, or leave out --ray to run on this machine") from exc


class RayRunner:
    """Submit batch tasks to Ray; every task asks for one CPU (``num_gpus`` per task optional).

    All queued tasks can be in flight at once (Ray schedules them over the cluster's
    CPUs); :meth:`wait` returns ``[(task, outcome), ...]`` as tasks finish.
    """

    name = "ray"

    def __init__(self, address: str, num_gpus: float = 0.0):
        self.ray = _import_ray()
        connect(address)
        from .batch import execute

        self._remote = self.ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=0)(execute)
        self._refs: dict[Any, dict[str, Any]] = {}
        self.capacity = 1 << 30

    def submit(self, task: dict[str, Any]) -> None:
        self._refs[self._remote.remote(task)] = task

    def wait(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1)
        finished = []
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:     # the worker died, or the node went away
                text = str(exc).strip().splitlines()
                outcome = {"ok": False, "error": f"Ray task failed ({type(exc).__name__}): "
                                                 f"{text[0] if text else ''}", "wall_s": None, "host": None}
            finished.append((task, outcome))
        return finished

    def close(self) -> None:
        """Cancel the tasks still queued or running (the connection itself stays open)."""
        for ref in self._refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - a task that finished meanwhile cannot be cancelled
                pass
        self._refs.clear()

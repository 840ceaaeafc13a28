"""``slimvision batch ... --ray [ADDRESS]``: the same jobs on Ray Data actors, on one machine or a cluster.

Ray Data streams the jobs (input and output paths, plain strings) through ``map_batches`` on a
pool of actors. Each actor builds the task once (one set of ONNX Runtime sessions, ``threads``
each) and runs :func:`~slimvision.inference.batch_jobs.run_job` on its batches: the same code
as the local worker pool, so outputs are written atomically by the actor and a bad file
comes back as a FAILED row. Rows stream back to the driver, which alone writes the manifest.

ADDRESS is what ``ray.init`` takes: ``auto`` (the cluster this machine belongs to),
``ray://HOST:10001`` (Ray Client) or ``HOST:6379``; without one a local Ray is started with one
CPU per worker and stopped afterwards. A Ray already started in this process (tests) is used as
it is. Every node needs slimvision installed and the inputs and outputs on a shared path.

Example:
    >>> summary = run_batch(spec, "photos/", "out/", workers=2,          # doctest: +SKIP
    ...                     engine=ray_engine(address=None), engine_name="ray")
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from slimvision.errors import ConfigError, SlimvisionError
from slimvision.inference.batch_jobs import Engine, Job, Row, run_job
from slimvision.inference.batch_tasks import TaskSpec, build_task

log = logging.getLogger(__name__)

#: Jobs per map_batches call: small, so work spreads evenly over actors and a killed run loses
#: little, large enough that Ray's per-batch bookkeeping (a few ms) stays small beside a model run.
DEFAULT_BATCH_SIZE = 4

_ADDRESS = re.compile(r"^(auto|local|ray://[^\s/:]+:\d{1,5}|[^\s/:]+:\d{1,5})$")


def check_address(address: str) -> str:
    """A Ray address as ``--ray`` takes it (``auto``, ``local``, ``ray://HOST:PORT``, ``HOST:PORT``).

    Example:
        >>> check_address("ray://head:10001")
        'ray://head:10001'
    """
    if not _ADDRESS.match(address):
        raise ConfigError(f"--ray: {address!r} is not a Ray address (auto, ray://HOST:PORT or HOST:PORT); "
                          "write --ray=ADDRESS, or --ray after SOURCE for a local Ray")
    return address


class _Worker:
    """A Ray Data actor: one task (its sessions built once), run on each batch of jobs."""

    def __init__(self, spec: TaskSpec) -> None:
        self.task = build_task(spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [run_job(self.task, Job(str(source), str(output)))
                for source, output in zip(batch["source"], batch["output"])]
        return {key: np.array([getattr(row, key) for row in rows]) for key in Row.__dataclass_fields__}


def _start(address: str | None, workers: int, threads: int) -> bool:
    """Connect to (or start) Ray; True if this call started it (and so must stop it)."""
    try:
        import ray
    except ImportError:
        raise SlimvisionError("--ray needs Ray: pip install 'slimvision[scale]'") from None
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                               "configure_logging": True}
    if address in (None, "local"):
        # Nothing leaves the machine: a Ray started here sends no usage statistics (a user's own
        # setting wins where they made one).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # One actor per worker, each holding ``threads`` CPUs: what the local pool would use.
        ray.init(num_cpus=workers * threads, **options)
    else:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise SlimvisionError(f"--ray {address}: cannot connect to the Ray cluster ({error})") from None
    return True


def _quiet_data(progress: bool) -> None:
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def ray_engine(address: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False) -> Engine:
    """An engine for :func:`~slimvision.inference.batch_jobs.run_batch` that runs jobs on Ray Data."""

    def run(spec: TaskSpec, jobs: Sequence[Job], workers: int) -> Iterator[Row]:
        if not jobs:
            return
        started = _start(address, workers, spec.threads)
        try:
            yield from _run(spec, jobs, workers, batch_size, progress)
        finally:
            if started:
                import ray

                ray.shutdown()

    return run


def _run(spec: TaskSpec, jobs: Sequence[Job], workers: int, batch_size: int, progress: bool) -> Iterator[Row]:
    import ray.data

    _quiet_data(progress)
    # Blocks of about one batch each, so every actor gets work from the start.
    dataset = ray.data.from_items([asdict(job) for job in jobs],
                                  override_num_blocks=max(1, min(len(jobs), -(-len(jobs) // batch_size))))
    results = dataset.map_batches(_Worker, fn_constructor_kwargs={"spec": spec}, batch_size=batch_size,
                                  batch_format="numpy", num_cpus=spec.threads,
                                  compute=ray.data.ActorPoolStrategy(size=workers))
    for record in results.iter_rows():
        yield Row(str(record["input"]), str(record["output"]), str(record["status"]), str(record["error"]),
                  float(record["seconds"]))

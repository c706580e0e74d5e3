"""Where chunks run: in this process, in worker processes that each load the model once, or on
a Dask cluster whose workers keep it loaded; and the chunks' entries handed back in input order
as they come back. Only a few chunks are ever in flight, so memory stays flat however many
images there are.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol

from digits.batch.inputs import Input
from digits.batch.output import BatchError
from digits.batch.predict import predict_inputs, to_entries
from digits.predictor import Predictor


def default_jobs() -> int:
    """The CPUs this process may run on (its affinity, under a container's or taskset's limit)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class _Result(Protocol):
    """What comes back for a submitted chunk: a concurrent.futures or a Dask future."""

    def result(self) -> list[dict[str, Any]]: ...


Submit = Callable[[list[Input]], _Result]

_worker_predictor: Predictor | None = None
_worker_failure: Exception | None = None


def _start_worker(model_path: str) -> None:
    global _worker_predictor, _worker_failure
    try:
        # One thread each: the processes are the parallelism.
        _worker_predictor = Predictor.from_path(model_path, threads=1)
    except Exception as exc:
        # Raised with the first chunk, where the command sees it: an initializer that raises
        # only breaks the pool, without a word about why.
        _worker_failure = exc


def _predict_in_worker(chunk: list[Input], min_confidence: float) -> list[dict[str, Any]]:
    if _worker_predictor is None:
        raise _worker_failure or RuntimeError("the worker has no model")
    return to_entries(predict_inputs(_worker_predictor, chunk, min_confidence))


_dask_predictors: dict[tuple[str, int, int], Predictor] = {}
_dask_lock = threading.Lock()


def _dask_predictor(model_path: str) -> Predictor:
    """The model, loaded once per worker process and kept for later batches; keyed by the file's
    size and time too, so that a model exported again at the same path is loaded again."""
    info = os.stat(model_path)
    key = (model_path, info.st_size, info.st_mtime_ns)
    with _dask_lock:  # the threads of one worker share the loaded model
        if key not in _dask_predictors:
            _dask_predictors[key] = Predictor.from_path(model_path, threads=1)
        return _dask_predictors[key]


def _predict_on_dask_worker(
    model_path: str, chunk: list[Input], min_confidence: float, base: str
) -> list[dict[str, Any]]:
    predictor = _dask_predictor(model_path)
    return to_entries(predict_inputs(predictor, chunk, min_confidence, base=base))


def _process_context() -> Any:
    """forkserver where there is one: workers forked from a clean server process that has this
    module imported already (quick to start, none of the caller's threads or sessions inherited);
    spawn elsewhere."""
    import multiprocessing  # here: a plain `digits predict` starts without it

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


@contextmanager
def in_this_process(predictor: Predictor, min_confidence: float) -> Iterator[tuple[Submit, int]]:
    def submit(chunk: list[Input]) -> _Result:
        future: Future[list[dict[str, Any]]] = Future()
        future.set_result(to_entries(predict_inputs(predictor, chunk, min_confidence)))
        return future

    yield submit, 1


@contextmanager
def in_processes(
    model_path: Path, min_confidence: float, jobs: int
) -> Iterator[tuple[Submit, int]]:
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        jobs,
        mp_context=_process_context(),
        initializer=_start_worker,
        initargs=(str(model_path),),
    )
    try:
        # Two chunks a worker: one being predicted, one waiting, so that no worker idles while
        # the writer catches up.
        yield (lambda chunk: pool.submit(_predict_in_worker, chunk, min_confidence)), 2 * jobs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def on_dask(
    model_path: Path, min_confidence: float, scheduler: str, jobs: int
) -> Iterator[tuple[Submit, int]]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise BatchError("--scheduler needs Dask: pip install 'digits[batch]'") from None
    with ExitStack() as stack:
        if scheduler == "local":
            cluster = LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = stack.enter_context(Client(stack.enter_context(cluster)))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="10s"))
            except OSError as exc:
                raise BatchError(f"no Dask scheduler answers at {scheduler} ({exc})") from None
        threads = sum(client.nthreads().values())
        # Relative file names are read from this folder: a worker may run in another one.
        base = os.getcwd()

        def submit(chunk: list[Input]) -> _Result:
            return client.submit(
                _predict_on_dask_worker, str(model_path), chunk, min_confidence, base, pure=False
            )

        yield submit, 2 * max(threads, 1) + 2


def in_order(submit: Submit, work: Iterator[list[Input]], window: int) -> Iterator[list[dict]]:
    """Each chunk's entries in input order, with at most `window` chunks submitted and not yet
    written: what bounds memory, however long the listing."""
    pending: deque[_Result] = deque()
    for chunk in work:
        pending.append(submit(chunk))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()

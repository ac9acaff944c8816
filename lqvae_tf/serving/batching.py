"""Server-side batching as TF Serving's `--enable_batching`: concurrent requests become one call.

Requests to the same signature (and the same per-example shape) wait in a queue; a batch thread
takes the queue as soon as it holds `max_batch_size` examples or its oldest request has waited
`batch_timeout_micros`, concatenates the inputs along the batch axis, runs the signature once and
hands every request back its own rows. Nothing is padded, so no request ever sees another's data;
if a merged batch fails (one request's images out of range, say), each request is rerun alone so
only the faulty one gets the error.

The parameters carry TF Serving's names and are read from the same text-proto file it takes with
`--batching_parameters_file`, e.g.::

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 2000 }
    num_batch_threads { value: 1 }
    max_enqueued_batches { value: 100 }
"""

from __future__ import annotations

import collections
import dataclasses
import re
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future

import numpy as np

from lqvae_tf.serving.rest_format import RequestError

Arrays = Mapping[str, np.ndarray]
_FIELD = re.compile(r"(\w+)\s*(?:\{\s*value\s*:\s*([^\s}]+)\s*\}|:\s*(\S+))")


class QueueFullError(RuntimeError):
    """The batching queue is full: the server is overloaded (HTTP 503, as TF Serving's UNAVAILABLE)."""


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters, the fields this server honours.

    Args:
        max_batch_size: the most examples in one batch; a larger request is refused (400), as
            TF Serving refuses a task larger than the maximum batch size.
        batch_timeout_micros: how long the oldest request waits for others to join its batch.
        num_batch_threads: batches run in parallel (one per CPU core at most is useful).
        max_enqueued_batches: queued examples beyond `max_enqueued_batches * max_batch_size`
            per signature are refused with 503.
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 1
    max_enqueued_batches: int = 100

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            minimum = 0 if field.name == "batch_timeout_micros" else 1
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"batching parameter {field.name} must be an integer >= {minimum}, got {value!r}")


def parse_batching_parameters(text: str) -> BatchingParameters:
    """`BatchingParameters` from the text proto TF Serving reads with `--batching_parameters_file`."""
    known = {field.name for field in dataclasses.fields(BatchingParameters)}
    values, rest = {}, text
    for match in _FIELD.finditer(text):
        name, value = match[1], match[2] or match[3]
        if name not in known:
            raise ValueError(f"batching parameter {name!r} is not supported here; supported: {sorted(known)}")
        try:
            values[name] = int(value)
        except ValueError:
            raise ValueError(f"batching parameter {name} must be an integer, got {value!r}") from None
        rest = rest.replace(match[0], " ", 1)
    leftover = re.sub(r"#[^\n]*", "", rest).strip()
    if leftover:
        raise ValueError(f"cannot parse the batching parameters near {leftover[:40]!r}")
    return BatchingParameters(**values)


def batch_size_of(arrays: Arrays) -> int:
    """The common leading dimension of a request's inputs; RequestError if they disagree."""
    sizes = {len(array) for array in arrays.values()}
    if len(sizes) != 1:
        raise RequestError(f"the inputs of one request must have the same batch size, got {sorted(sizes)}")
    return sizes.pop()


@dataclasses.dataclass
class _Task:
    function: Callable[[Arrays], dict[str, np.ndarray]]
    arrays: Arrays
    size: int
    enqueued: float
    future: Future = dataclasses.field(default_factory=Future)


class BatchScheduler:
    """Merges concurrent calls of the same function into batches run by `num_batch_threads` threads.

    Args:
        parameters: the batching parameters.

    Example:
        >>> scheduler = BatchScheduler(BatchingParameters(max_batch_size=8))
        >>> outputs = scheduler.submit(signature, {"images": images}).result()
        >>> scheduler.close()
    """

    def __init__(self, parameters: BatchingParameters):
        self.parameters = parameters
        self._queues: dict[tuple, collections.deque[_Task]] = {}
        self._queued_examples: dict[tuple, int] = collections.Counter()
        self._condition = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
            for i in range(parameters.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, function: Callable[[Arrays], dict[str, np.ndarray]], arrays: Arrays, key: Hashable = None
    ) -> Future:
        """Queues one request; the future gives its own outputs (or the error of its inputs).

        Args:
            function: runs a batch: named input arrays -> named output arrays.
            arrays: this request's inputs.
            key: requests with equal keys (default: the same `function` object) may share a batch.
        """
        size = batch_size_of(arrays)
        limit = self.parameters.max_batch_size
        if size > limit:
            raise RequestError(f"Task size {size} is larger than maximum batch size {limit}")
        # Only requests for the same function with the same per-example shapes can be concatenated.
        shapes = tuple((name, array.shape[1:], array.dtype.str) for name, array in arrays.items())
        key = (id(function) if key is None else key, shapes)
        task = _Task(function, arrays, size, time.monotonic())
        with self._condition:
            if self._closed:
                raise QueueFullError("the batch scheduler is shut down")
            if self._queued_examples[key] + size > self.parameters.max_enqueued_batches * limit:
                raise QueueFullError("The batch scheduling queue to which this task was submitted is full")
            self._queues.setdefault(key, collections.deque()).append(task)
            self._queued_examples[key] += size
            self._condition.notify()
        return task.future

    def close(self) -> None:
        """Stops the batch threads after the batches already queued have run."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join()

    def _next_batch(self) -> list[_Task] | None:
        timeout = self.parameters.batch_timeout_micros / 1e6
        limit = self.parameters.max_batch_size
        with self._condition:
            while True:
                now, ready, wait = time.monotonic(), None, None
                for key, queue in self._queues.items():
                    if not queue:
                        continue
                    due = queue[0].enqueued + timeout
                    if self._queued_examples[key] >= limit or due <= now or self._closed:
                        if ready is None or queue[0].enqueued < self._queues[ready][0].enqueued:
                            ready = key
                    else:
                        wait = due - now if wait is None else min(wait, due - now)
                if ready is not None:
                    queue, batch, rows = self._queues[ready], [], 0
                    while queue and rows + queue[0].size <= limit:
                        task = queue.popleft()
                        rows += task.size
                        batch.append(task)
                    self._queued_examples[ready] -= rows
                    return batch
                if self._closed:
                    return None
                self._condition.wait(wait)

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            # A client that went away cancelled its future; its examples are not run.
            self._run([task for task in batch if task.future.set_running_or_notify_cancel()])

    def _run(self, batch: list[_Task]) -> None:
        if not batch:
            return
        names = list(batch[0].arrays)
        arrays = batch[0].arrays
        if len(batch) > 1:
            arrays = {n: np.concatenate([t.arrays[n] for t in batch]) for n in names}
        try:
            outputs = batch[0].function(arrays)
        except BaseException as error:
            if len(batch) == 1:
                batch[0].future.set_exception(error)
                return
            for task in batch:  # one request's bad inputs must not fail the others
                self._run([task])
            return
        total, start = sum(t.size for t in batch), 0
        for task in batch:
            stop = start + task.size
            task.future.set_result(
                {n: value[start:stop] if value.ndim and len(value) == total else value for n, value in outputs.items()}
            )
            start = stop

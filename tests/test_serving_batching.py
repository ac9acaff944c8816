"""Server-side batching (TF Serving's --enable_batching): merged calls, own rows back, no leaks."""

import threading
import time

import numpy as np
import pytest

from lqvae_tf.serving.batching import BatchingParameters, BatchScheduler, QueueFullError, parse_batching_parameters
from lqvae_tf.serving.rest_format import RequestError


class Recorder:
    """A batch function that doubles its input and records the batch sizes it was called with."""

    def __init__(self, delay_s=0.0):
        self.batch_sizes, self.delay_s = [], delay_s

    def __call__(self, arrays):
        self.batch_sizes.append(len(arrays["x"]))
        time.sleep(self.delay_s)
        if (arrays["x"] < 0).any():
            raise RequestError("negative input")
        return {"y": arrays["x"] * 2, "total": np.array([arrays["x"].sum()])}


def _submit_together(scheduler, function, requests):
    futures = [None] * len(requests)

    def submit(i):
        futures[i] = scheduler.submit(function, {"x": requests[i]})

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return futures


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_own_rows():
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=16, batch_timeout_micros=200_000))
    function = Recorder()
    requests = [np.full((size, 3), i, np.float32) for i, size in enumerate([1, 3, 2, 1])]
    try:
        futures = _submit_together(scheduler, function, requests)
        for request, future in zip(requests, futures):
            np.testing.assert_array_equal(future.result(timeout=10)["y"], request * 2)
    finally:
        scheduler.close()
    assert function.batch_sizes == [7]


def test_a_full_batch_leaves_at_once_and_never_exceeds_max_batch_size():
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=4, batch_timeout_micros=10_000_000))
    function = Recorder()
    start = time.monotonic()
    try:
        futures = _submit_together(scheduler, function, [np.ones((1, 2), np.float32)] * 8)
        for future in futures:
            future.result(timeout=10)
    finally:
        scheduler.close()
    assert time.monotonic() - start < 5, "full batches must not wait for the timeout"
    assert sorted(function.batch_sizes) == [4, 4]


def test_one_bad_request_fails_alone_not_its_batch():
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, batch_timeout_micros=200_000))
    requests = [np.ones((1, 2), np.float32), -np.ones((1, 2), np.float32), np.full((2, 2), 3, np.float32)]
    try:
        good, bad, other = _submit_together(scheduler, Recorder(), requests)
        np.testing.assert_array_equal(good.result(timeout=10)["y"], requests[0] * 2)
        np.testing.assert_array_equal(other.result(timeout=10)["y"], requests[2] * 2)
        with pytest.raises(RequestError, match="negative"):
            bad.result(timeout=10)
    finally:
        scheduler.close()


def test_different_functions_and_shapes_are_never_merged():
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, batch_timeout_micros=100_000))
    first, second = Recorder(), Recorder()
    try:
        futures = [
            scheduler.submit(first, {"x": np.ones((1, 2), np.float32)}),
            scheduler.submit(second, {"x": np.ones((1, 2), np.float32)}),
            scheduler.submit(first, {"x": np.ones((1, 5), np.float32)}),
        ]
        for future in futures:
            future.result(timeout=10)
    finally:
        scheduler.close()
    assert first.batch_sizes == [1, 1] and second.batch_sizes == [1]


def test_oversized_requests_and_a_full_queue_are_refused():
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1))
    try:
        with pytest.raises(RequestError, match="Task size 3 is larger than maximum batch size 2"):
            scheduler.submit(Recorder(), {"x": np.ones((3, 1), np.float32)})
        slow = Recorder(delay_s=0.5)
        scheduler.submit(slow, {"x": np.ones((2, 1), np.float32)})  # taken by the batch thread
        time.sleep(0.1)
        scheduler.submit(slow, {"x": np.ones((2, 1), np.float32)})  # fills the queue
        with pytest.raises(QueueFullError, match="queue .* is full"):
            scheduler.submit(slow, {"x": np.ones((1, 1), np.float32)})
    finally:
        scheduler.close()


def test_batching_parameters_file_in_tf_servings_text_format():
    text = """
    # as tensorflow_model_server --batching_parameters_file reads it
    max_batch_size { value: 64 }
    batch_timeout_micros { value: 500 }
    num_batch_threads { value: 2 }
    max_enqueued_batches { value: 10 }
    """
    assert parse_batching_parameters(text) == BatchingParameters(64, 500, 2, 10)
    assert parse_batching_parameters("max_batch_size { value: 8 }") == BatchingParameters(max_batch_size=8)
    with pytest.raises(ValueError, match="not supported"):
        parse_batching_parameters("allowed_batch_sizes: 8")
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        parse_batching_parameters("max_batch_size { value: 0 }")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_batching_parameters("max_batch_size { value: 8 } garbage")

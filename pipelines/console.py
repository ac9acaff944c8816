"""The main job's terminal: one line per component, progress of training and attacks, the verdict.

Everything else a run prints (absl INFO from TFX and Beam, Python warnings, TensorFlow's C++
logs, Keras' epoch lines) goes to a log file: `quiet_terminal(path)` points the process's
standard output and error (file descriptors 1 and 2, which C++ code writes to as well) at the
file for the duration of the run, with absl's handler writing every log record there, and gives
back a writer to the terminal. A `logging.Handler` on the root logger turns TFX's own records
("Component X is running.", "A cached execution N is used.", "Skipping execution for X",
"Component X is finished.") into one line per component, and echoes the library's progress
records (`lqvae_tf.pipeline_components.progress`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator

from absl import logging as absl_logging

from lqvae_tf.pipeline_components.progress import PROGRESS_LOGGER

# TFX's LocalDagRunner and launcher log these (tfx/orchestration/local/local_dag_runner.py,
# tfx/orchestration/portable/launcher.py).
RUNNING = re.compile(r"Component (\S+) is running\.")
FINISHED = re.compile(r"Component (\S+) is finished\.")
CACHED = re.compile(r"A cached execution \d+ is used\.")
SKIPPED = re.compile(r"Skipping execution for (\S+)")
NAME_WIDTH = 18


def component_line(name: str, seconds: float, outcome: str) -> str:
    """One component's line: its id, seconds taken, and `ran`, `cached` or `skipped`."""
    return f"{name:<{NAME_WIDTH}} {seconds:7.1f} s  {outcome}"


def progress_line(component: str | None, message: str) -> str:
    """A progress record, indented under the component it belongs to."""
    return f"  {component + ': ' if component else ''}{message}"


class ComponentLines(logging.Handler):
    """Writes a line per finished component, and the progress records, with `write`."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        super().__init__(logging.INFO)
        self.write = write
        self.clock = clock
        self.component: str | None = None
        self.started = 0.0
        self.outcome = "ran"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a third-party record with bad arguments is not ours to report
            return
        if record.name == PROGRESS_LOGGER:
            self.write(progress_line(self.component, message))
        elif match := RUNNING.match(message):
            self.component, self.started, self.outcome = match.group(1), self.clock(), "ran"
        elif CACHED.match(message):
            self.outcome = "cached"
        elif SKIPPED.match(message):
            self.outcome = "skipped (its condition is not met)"
        elif match := FINISHED.match(message):
            self.write(component_line(match.group(1), self.clock() - self.started, self.outcome))
            self.component = None


@contextlib.contextmanager
def quiet_terminal(log_path: str) -> Iterator[Callable[[str], None]]:
    """Sends the process's output and every log record to `log_path`; yields a terminal writer.

    Component lines and progress records reach the terminal through the writer as they happen.
    On leaving, standard output and error are restored.
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    saved = [os.dup(descriptor) for descriptor in (1, 2)]
    log = open(log_path, "a", buffering=1, encoding="utf-8")

    def write(line: str) -> None:
        terminal.write(line + "\n")

    handler = ComponentLines(write)
    absl_logging.use_absl_handler()  # every record, in absl's format, to standard error: the log file
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)
    try:
        for descriptor in (1, 2):
            os.dup2(log.fileno(), descriptor)
        yield write
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for descriptor, copy in zip((1, 2), saved):
            os.dup2(copy, descriptor)
            os.close(copy)
        root.removeHandler(handler)
        root.setLevel(previous_level)
        log.close()
        terminal.flush()
        terminal.close()

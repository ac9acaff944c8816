"""Writing a benchmark's table into bench/RESULTS.md with its command, date and machine."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from collections.abc import Sequence

import tensorflow as tf

from lqvae_tf.atomic import write_text
from lqvae_tf.generated import is_generated, marker

RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS.md")
WRITER = "the bench scripts (`bench/results_table.py` appends each table)"


def machine() -> str:
    """What the numbers were measured on."""
    return f"{platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}, CPU only"


def append_table(title: str, settings: str, header: Sequence[str], rows: Sequence[str], path: str = RESULTS) -> str:
    """Prints a Markdown table headed by the exact command line and appends it to `path`."""
    # Quoted as a shell would need it, so that the line runs again as written.
    command = shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    table = "\n".join(
        [
            f"### {title} ({datetime.date.today()}, {machine()})",
            "",
            f"Command: `{command}` ({settings}).",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *rows,
            "",
        ]
    )
    print(table)
    earlier = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            earlier = handle.read()
    if not is_generated(earlier):
        earlier = marker(WRITER) + "\n" + earlier
    write_text(path, earlier + "\n" + table)
    return table

"""The main job's quiet terminal: one line per component, progress records, and everything else in the log file."""

import logging
import os
import subprocess
import sys
import textwrap

from lqvae_tf.pipeline_components.progress import PROGRESS_LOGGER
from pipelines.console import ComponentLines, component_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(message: str, *args, name: str = "absl") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)


def test_tfx_records_become_one_line_per_component_with_seconds_and_outcome():
    lines, now = [], iter([0.0, 2.5, 10.0, 10.5, 20.0, 20.25])
    handler = ComponentLines(lines.append, clock=lambda: next(now))
    for message, *args in [
        ("Component %s is running.", "Trainer"),
        ("some executor chatter",),
        ("purifier epoch 1/2: loss_f 0.3 (4 s)",),
        ("Component %s is finished.", "Trainer"),
        ("Component %s is running.", "StatisticsGen"),
        ("A cached execution %d is used.", 7),
        ("Component %s is finished.", "StatisticsGen"),
        ("Component %s is running.", "ServingPusher"),
        ("Skipping execution for %s", "ServingPusher"),
        ("Component %s is finished.", "ServingPusher"),
    ]:
        name = PROGRESS_LOGGER if message.startswith("purifier") else "absl"
        handler.emit(_record(message, *args, name=name))
    assert lines == [
        "  Trainer: purifier epoch 1/2: loss_f 0.3 (4 s)",
        component_line("Trainer", 2.5, "ran"),
        component_line("StatisticsGen", 0.5, "cached"),
        component_line("ServingPusher", 0.25, "skipped (its condition is not met)"),
    ]
    assert lines[1] == "Trainer                2.5 s  ran"


def test_quiet_terminal_sends_third_party_output_to_the_log_file(tmp_path):
    log = tmp_path / "run" / "pipeline.log"
    script = textwrap.dedent(
        f"""
        import logging, os, sys, warnings
        from absl import logging as absl_logging
        from pipelines.console import quiet_terminal
        from lqvae_tf.pipeline_components.progress import progress

        absl_logging.set_verbosity(absl_logging.INFO)
        with quiet_terminal({str(log)!r}):
            print("a print")
            os.write(2, b"a C++ log line on fd 2\\n")
            absl_logging.info("absl INFO line")
            warnings.warn("a FutureWarning", FutureWarning)
            progress.info("attack %d/2: fgsm 55.0%%", 1)
        print("after")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    assert completed.stdout.splitlines() == ["  attack 1/2: fgsm 55.0%", "after"]
    assert "a FutureWarning" not in completed.stderr and "absl INFO" not in completed.stderr
    text = log.read_text()
    for line in ("a print", "a C++ log line on fd 2", "absl INFO line", "a FutureWarning", "attack 1/2"):
        assert line in text, line

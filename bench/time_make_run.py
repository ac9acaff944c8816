"""Times `make run` from a fresh run folder and writes what it measured where the README shows it.

`make run` is the main job a new user tries first; its wall time and the blessed purifier's
numbers are measured here as that user would meet them (a new run folder, so nothing of an
earlier run is reused; the venv and the data already set up, as after `make data`), then:

* appended as a table to bench/RESULTS.md (`results_table.append_table`), and
* written into the README's block for it (`lqvae_tf.generated.replace_block`), the one place
  on the front page where a measured number stands.

From the robustness gate's report (`robustness.json` of the newest gate run): the classifier's
clean accuracy alone and behind the purifier, the clean cost, each attack check's accuracy
with its 95% interval, and whether the gate blessed the model.

Usage (one heavy job at a time on a 2-core machine):
    python bench/time_make_run.py --out runs/make_run_timed
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_table import RESULTS, append_table, machine  # noqa: E402

from lqvae_tf.atomic import write_text  # noqa: E402
from lqvae_tf.generated import replace_block  # noqa: E402
from lqvae_tf.pipeline_components.gate import REPORT_FILE  # noqa: E402
from lqvae_tf.provenance import code_version  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
WRITER = "`bench/time_make_run.py`"


def gate_report(run_dir: str) -> dict:
    """The newest robustness gate report of the run."""
    folder = os.path.join(run_dir, "tfx", "RobustnessGate", "evaluation")
    runs = sorted((int(name) for name in os.listdir(folder) if name.isdigit()), reverse=True)
    with open(os.path.join(folder, str(runs[0]), REPORT_FILE), encoding="utf-8") as handle:
        return json.load(handle)


def _cell(accuracy: dict) -> str:
    low, high = accuracy["ci95"]
    return f"{accuracy['accuracy']}% [{low}, {high}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "make_run_timed"), help="the fresh run folder")
    parser.add_argument("--results", default=RESULTS)
    parser.add_argument("--readme", default=README)
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(["make", "run", f"RUN_DIR={os.path.abspath(args.out)}"], cwd=ROOT, check=True)
    minutes = (time.monotonic() - started) / 60
    report = gate_report(args.out)
    checks = {check["check"]: check for check in report["checks"]}
    attacks = [check for check in report["checks"] if check["check"] != "clean"]
    alone = attacks[0]["row"]["no_attack"]  # the classifier alone on the gate's clean images
    behind = checks["clean"]["accuracy"]
    cost = round(alone["accuracy"] - behind["accuracy"], 2)
    verdict = "blessed" if report["blessed"] else "refused"
    rows = [f"| wall time | {minutes:.1f} min |", f"| gate verdict | {verdict} |"]
    rows += [f"| clean, classifier alone | {_cell(alone)} |", f"| clean, behind the purifier | {_cell(behind)} |"]
    rows += [f"| clean cost | {cost} points |"]
    rows += [f"| {check['attack']} {check['row']['params']} | {_cell(check['accuracy'])} |" for check in attacks]
    append_table(
        "`make run` from a fresh run folder",
        f"commit {code_version()}; venv and data set up beforehand; gate on {report['n']} eval images",
        ["what", "measured"],
        rows,
        path=args.results,
    )
    adaptive = ", ".join(f"`{check['attack']}` {_cell(check['accuracy'])}" for check in attacks)
    body = (
        f"Measured on {datetime.date.today()} ({machine()}, commit {code_version()}, `python bench/time_make_run.py`): "
        f"`make run` took **{minutes:.1f} min** from a fresh run folder; the gate **{verdict}** the purifier: "
        f"clean accuracy {_cell(alone)} alone, {_cell(behind)} behind it (cost {cost} points); {adaptive} "
        f"on {report['n']} eval images."
    )
    with open(args.readme, encoding="utf-8") as handle:
        text = handle.read()
    write_text(args.readme, replace_block(text, WRITER, body))
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

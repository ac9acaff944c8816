"""`EpochRecord`: every epoch's logs and time in a file, so a resumed `fit` knows its whole past.

At the bottom of the layers (beside `atomic`): both the purifier's training and the classifiers'
adversarial training resume interrupted runs with it.
"""

from __future__ import annotations

import json
import os
import time

import keras

from lqvae_tf.atomic import write_text


class EpochRecord(keras.callbacks.Callback):
    """Keeps every epoch's logs and wall seconds in a JSON file, so a resumed fit knows its whole past.

    Keras' `History` holds only the epochs of one `fit` call: after `BackupAndRestore` resumes an
    interrupted run at epoch `k`, epochs `0 .. k-1` are gone from it, and a timer around the call
    misses the time they took. This callback writes `path` after every epoch (atomically) and, on
    the first epoch of a resumed fit, keeps what an earlier fit recorded for the epochs before it.

    Put it last among the callbacks, so that its logs hold what the others add (`sharpness`,
    `adversarial`, `val_distinct_codes`), and keep `path` inside the backup folder, so that a
    finished run, whose backup is removed, leaves no record for a new run to inherit.

    Attributes:
        records: one `{"epoch", "seconds", "logs"}` per finished epoch, in order.
        earlier_seconds: the wall seconds of the epochs that earlier, interrupted fits ran.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.records: list[dict] = []
        self.earlier_seconds = 0.0
        self._first_epoch = True
        self._epoch_start = 0.0

    def on_train_begin(self, logs=None):
        self.records = []
        if os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as handle:
                self.records = json.load(handle)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:  # a resumed fit starts past 0: keep the earlier fits' epochs before it
            self.records = [record for record in self.records if record["epoch"] < epoch]
            self.earlier_seconds = float(sum(record["seconds"] for record in self.records))
            self._first_epoch = False
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = round(time.perf_counter() - self._epoch_start, 3)
        values = {name: float(value) for name, value in (logs or {}).items()}
        self.records.append({"epoch": int(epoch), "seconds": seconds, "logs": values})
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        write_text(self.path, json.dumps(self.records))

    @property
    def history(self) -> dict[str, list[float]]:
        """Every recorded epoch's metrics, as `History.history` would hold them for one unbroken fit."""
        names = dict.fromkeys(name for record in self.records for name in record["logs"])
        return {name: [record["logs"][name] for record in self.records if name in record["logs"]] for name in names}

    @property
    def epoch_seconds(self) -> list[float]:
        """Every recorded epoch's wall seconds, in order (an epoch that waited on a paused process
        shows it here, where the total alone would hide which epoch it was)."""
        return [float(record["seconds"]) for record in self.records]

"""Progress of the pipeline's long steps (training epochs, gate attacks) as log records.

The components log a short line per epoch or attack to the `PROGRESS_LOGGER` logger; the local
runner's quiet terminal (`pipelines.console`) shows exactly these, and every other record goes
to the run's log file.
"""

from __future__ import annotations

import logging

PROGRESS_LOGGER = "lqvae_tf.progress"
progress = logging.getLogger(PROGRESS_LOGGER)

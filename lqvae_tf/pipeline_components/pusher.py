"""The pusher: exports a blessed purifier as the next version of a TF Serving model folder.

TFX's Pusher copies the Trainer's SavedModel as it is; the purifier's serving form (named
signatures, warm-up requests, the classifier's `classify` signature) is built by
`lqvae_tf.serving.export_purifier`, so this component calls that instead. It refuses an
unblessed model even when not placed under `tfx.dsl.Cond`.
"""

# No `from __future__ import annotations`: TFX reads the component signatures' annotations as types.
import json
import os

from tfx import v1 as tfx
from tfx.utils import path_utils

from lqvae_tf.pipeline_components.gate import CLASSIFIER_FILE, PURIFIER_FILE
from lqvae_tf.serving import export_purifier

PUSH_FILE = "push.json"


@tfx.dsl.components.component
def ServingPusher(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    model_blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    pushed_model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.PushedModel],
    serving_base_dir: tfx.dsl.components.Parameter[str],
    serving_model_name: tfx.dsl.components.Parameter[str] = "lqvae",
    with_classifier: tfx.dsl.components.Parameter[bool] = True,
) -> None:
    """Writes `<serving_base_dir>/<serving_model_name>/<next version>/` if the model is blessed.

    Args:
        model: the Trainer's model (`purifier.keras`, `classifier.keras` in `Format-Serving/`).
        model_blessing: the robustness gate's blessing.
        pushed_model: output; custom properties `pushed` (1 or 0), `pushed_destination` and
            `pushed_version`, and `push.json` saying the same.
        serving_base_dir: the folder of TF Serving models the server watches.
        serving_model_name: the model's name (`/v1/models/<name>`).
        with_classifier: export the classifier too (the `classify` signature).
    """
    record = {"pushed": 0}
    if model_blessing.get_int_custom_property("blessed") == 1:
        serving_dir = path_utils.serving_model_dir(model.uri)
        classifier = os.path.join(serving_dir, CLASSIFIER_FILE) if with_classifier else None
        destination = export_purifier(
            os.path.join(serving_dir, PURIFIER_FILE), serving_base_dir, serving_model_name, classifier=classifier
        )
        record = {"pushed": 1, "pushed_destination": destination, "pushed_version": int(os.path.basename(destination))}
        pushed_model.set_string_custom_property("pushed_destination", destination)
        pushed_model.set_int_custom_property("pushed_version", record["pushed_version"])
    pushed_model.set_int_custom_property("pushed", record["pushed"])
    os.makedirs(pushed_model.uri, exist_ok=True)
    with open(os.path.join(pushed_model.uri, PUSH_FILE), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)

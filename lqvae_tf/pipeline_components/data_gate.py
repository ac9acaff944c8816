"""The data gate: turns ExampleValidator's per-split verdict into one `blessed` property.

ExampleValidator records `blessed` as a JSON map split -> 0/1, which `tfx.dsl.Cond` can test
locally but TFX's Kubeflow v2 compiler cannot (it drops string keys when it writes the CEL
condition). This component reads the anomalies of every split, writes a readable summary
(`anomalies.json`: split -> feature -> descriptions) and sets an int `blessed` on its output, so
the Trainer can sit under a `Cond` that every orchestrator evaluates alike.
"""

# No `from __future__ import annotations`: TFX reads the component signatures' annotations as types.
import json
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

SUMMARY_FILE = "anomalies.json"
ANOMALIES_FILE = "SchemaDiff.pb"


class DataBlessing(tfx.dsl.Artifact):
    """The data gate's verdict: custom property `blessed` (1: no anomaly in any split, else 0)."""

    # "<namespace>.<Name>": the form Kubeflow v2 requires of custom artifact types (its schema title).
    TYPE_NAME = "lqvae.DataBlessing"


def read_anomalies(anomalies: tfx.types.standard_artifacts.ExampleAnomalies) -> dict[str, dict[str, list[str]]]:
    """Split -> feature (or "<dataset>") -> the anomaly descriptions ExampleValidator wrote."""
    summary = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
        report = anomalies_pb2.Anomalies()
        with open(path, "rb") as handle:
            report.ParseFromString(handle.read())
        found = {
            feature: [f"{reason.short_description}: {reason.description}" for reason in info.reason]
            for feature, info in report.anomaly_info.items()
        }
        if report.HasField("dataset_anomaly_info"):
            found["<dataset>"] = [reason.description for reason in report.dataset_anomaly_info.reason]
        summary[split] = found
    return summary


@tfx.dsl.components.component
def DataGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    blessing: tfx.dsl.components.OutputArtifact[DataBlessing],
) -> None:
    """Blesses the data only if ExampleValidator found no anomaly in any split.

    Args:
        anomalies: ExampleValidator's output.
        blessing: output; `blessed` (int), `anomalous_splits` (comma-separated) and
            `anomalies.json`, the per-split, per-feature descriptions.
    """
    summary = read_anomalies(anomalies)
    anomalous = sorted(split for split, found in summary.items() if found)
    blessing.set_int_custom_property("blessed", 0 if anomalous else 1)
    blessing.set_string_custom_property("anomalous_splits", ",".join(anomalous))
    os.makedirs(blessing.uri, exist_ok=True)
    with open(os.path.join(blessing.uri, SUMMARY_FILE), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)

"""An ExampleGen over a user's own dataset: TFX's `FileBasedExampleGen` with a custom executor.

The files are read inside the pipeline graph, by Beam, with the library's readers
(`lqvae_tf.data.user_data`): a folder of PNG/JPEG images (one subfolder per class, or a
`labels.csv`), a `.npz`, or TFRecords of `tf.train.Example`. Each image becomes one example in
the pipeline's own form (`lqvae_tf.pipeline_components.records`: flat int64 pixels and a label),
so StatisticsGen, SchemaGen and ExampleValidator see one value per pixel, as for Fashion-MNIST.

    example_gen = UserDataExampleGen("my_images/", {"train": 4, "eval": 1})

The dataset is read as one input split, cut into the named output splits by ExampleGen's hash
of each example (4:1 above: about 80% train). Before the Beam graph is built the executor checks
every file (`inspect_user_data`), so bad data fails the component with a message naming the
file. The images are read in shards, so that a multi-process or distributed Beam runner decodes
them in parallel. ExampleGen's input fingerprint, which decides whether a cached output is
reused, covers the dataset's files (a `.npz` or record file; the images of class subfolders) or,
for a folder with a `labels.csv`, its top-level entries.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from lqvae_tf.data.image_folder import LABELS_FILE
from lqvae_tf.data.registry import PIXEL_RANGE
from lqvae_tf.data.user_data import RECORD_EXTENSIONS, inspect_user_data, user_dataset
from lqvae_tf.pipeline_components.records import to_example

COMPONENT_ID = "UserDataExampleGen"
INPUT_SPLIT = "all"
# Images are read in at most this many shards (Beam elements), each by one worker.
READ_SHARDS = 8
_GLOB_CHARACTERS = "*?["


def input_source(path: str) -> tuple[str, str]:
    """ExampleGen's `input_base` and split pattern for a user's dataset (see `dataset_path`).

    A file (`.npz`, TFRecord) is its folder and its name; a folder with a `labels.csv` or of
    TFRecord files is itself and `*`; a folder of class subfolders is itself and `*/*`.
    """
    path = os.path.abspath(path) if "://" not in path else path
    if not tf.io.gfile.isdir(path):
        return os.path.dirname(path), os.path.basename(path)
    names = tf.io.gfile.listdir(path)
    flat = LABELS_FILE in names or any(name.lower().endswith(RECORD_EXTENSIONS) for name in names)
    return path, "*" if flat else "*/*"


def dataset_path(input_base: str, pattern: str) -> str:
    """The dataset `input_source` describes: `input_base` itself for a glob, else the file it names."""
    return (
        input_base if any(character in pattern for character in _GLOB_CHARACTERS) else os.path.join(input_base, pattern)
    )


def _image_size(exec_properties: Mapping[str, Any]) -> tuple[int, int] | None:
    """The `image_size` of the component's custom config (None: the images' own, shared size)."""
    serialized = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not serialized:
        return None
    custom_config = json_format.Parse(serialized, tfx.proto.CustomConfig())
    settings = struct_pb2.Struct()
    custom_config.custom_config.Unpack(settings)
    if "image_size" not in settings.fields:
        return None
    return tuple(int(value.number_value) for value in settings.fields["image_size"].list_value.values)


def _read_shard(shard: int, path: str, image_size: Sequence[int] | None, shards: int):
    """Yields the examples of one shard of the dataset (every `shards`-th image from the `shard`-th)."""
    images = user_dataset(path, "all", value_range=PIXEL_RANGE, image_size=image_size, shard=(shard, shards))
    for image, label in images.as_numpy_iterator():
        yield to_example(np.rint(image).astype(np.uint8), int(label))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _UserDataToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str):
    """The user's dataset as a PCollection of `tf.train.Example` (ExampleGen's input PTransform)."""
    path = dataset_path(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    image_size = _image_size(exec_properties)
    inspect_user_data(path, image_size)  # every file checked here, the error naming the bad one
    count = int(user_dataset(path, "all", image_size=image_size).cardinality())
    shards = min(READ_SHARDS, count) if count > 0 else 1  # unknown count (resized arrays): one reader
    return (
        pipeline
        | "Shards" >> beam.Create(range(shards))
        | "Spread" >> beam.Reshuffle()
        | "Read" >> beam.FlatMap(_read_shard, path, image_size, shards)
    )


class Executor(BaseExampleGenExecutor):
    """ExampleGen's executor for a user's dataset (see the module docstring)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _UserDataToExample


def UserDataExampleGen(
    data_path: str, output_splits: Mapping[str, int], image_size: Sequence[int] | None = None
) -> FileBasedExampleGen:
    """The ExampleGen component over the user's dataset at `data_path`.

    Args:
        data_path: a folder of images, a `.npz`, or a TFRecord file or folder (see
            `lqvae_tf.data.user_data`).
        output_splits: split name -> hash buckets, e.g. {"train": 4, "eval": 1}.
        image_size: (height, width) to crop and resize every image to; None keeps their own
            size, which they must then share.
    """
    input_base, pattern = input_source(data_path)
    settings = struct_pb2.Struct()
    if image_size is not None:
        settings.update({"image_size": [int(value) for value in image_size]})
    custom_config = tfx.proto.CustomConfig()
    custom_config.custom_config.Pack(settings)
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name=INPUT_SPLIT, pattern=pattern)]),
        output_config=tfx.proto.Output(
            split_config=tfx.proto.SplitConfig(
                splits=[
                    tfx.proto.SplitConfig.Split(name=name, hash_buckets=int(buckets))
                    for name, buckets in output_splits.items()
                ]
            )
        ),
        custom_config=custom_config,
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    ).with_id(COMPONENT_ID)

"""Serving the purifier: TF Serving export, an embedded TF-Serving-compatible REST server, clients."""

from lqvae_tf.serving.client import GrpcClient, RestClient, ServingError
from lqvae_tf.serving.export import export_purifier, list_versions, next_version

__all__ = ["GrpcClient", "RestClient", "ServingError", "export_purifier", "list_versions", "next_version"]

"""The lqvae-tf TFX pipeline: ingest, validate, train, gate on measured robustness, push for serving."""

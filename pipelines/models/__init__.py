"""Model code run by the pipeline's Trainer (`trainer_module.run_fn`)."""

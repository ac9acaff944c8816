"""The `lqvae` command line."""

"""The `lqvae` command: each subcommand parses its arguments and calls the layers below (`lqvae --help`)."""

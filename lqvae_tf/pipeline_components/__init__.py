"""TFX building blocks for the lqvae-tf pipeline (`pipelines/`): records, the ExampleGen over a
user's own data, the robustness gate, the pusher.

Kept apart from `lqvae_tf`'s other modules so that importing the library never imports TFX;
`records` needs TensorFlow only, `example_gen`, `gate` and `pusher` need TFX.
"""

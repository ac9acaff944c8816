"""TFX building blocks for the lqvae-tf pipeline (`pipelines/`): records, the robustness gate, the pusher.

Kept apart from `lqvae_tf`'s other modules so that importing the library never imports TFX;
`records` needs TensorFlow only, `gate` and `pusher` need TFX.
"""

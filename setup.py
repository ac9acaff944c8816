"""Package metadata of lqvae-tf. The exact, tested versions are in requirements.lock."""

from setuptools import find_packages, setup

RUNTIME = [
    "tensorflow>=2.16,<2.17",
    "keras>=3.3,<3.7",
    "tensorflow-datasets>=4.9",
    "cleverhans==4.0.0",
    "tensorboard>=2.16,<2.17",
    "matplotlib>=3.7",
    "tqdm>=4.60",
]

setup(
    name="lqvae-tf",
    version="0.1.0",
    description="LQ-VAE adversarial purifier for TensorFlow/Keras image classifiers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["lqvae_tf", "lqvae_tf.*"]),
    # The trained purifiers behind LQVAE.from_preset (weights, config, measured metrics).
    package_data={"lqvae_tf.presets": ["*/*.weights.h5", "*/*.json", "*/*.md"]},
    install_requires=RUNTIME,
    extras_require={
        "pipeline": ["tfx==1.16.0", "apache-beam==2.60.0"],
        "serving": ["starlette", "uvicorn", "requests"],
        "evaluation": ["scikit-learn"],
        "dev": ["pytest", "ruff", "httpx"],
    },
    entry_points={"console_scripts": ["lqvae=lqvae_tf.cli.main:main"]},
)

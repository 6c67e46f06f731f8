"""tensorboard-rnn-units: what each hidden unit of a recurrent network has learned, in TensorBoard."""

from setuptools import setup

setup(
    name="tensorboard-rnn-units",
    version="1.0.0",
    license="Apache-2.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=["tensorboard_rnn_units", "tensorboard_rnn_units.frontend"],
    package_dir={"tensorboard_rnn_units.frontend": "frontend"},
    package_data={"tensorboard_rnn_units.frontend": ["*.js", "*.css", "*/*.js"]},
    install_requires=[
        "tensorboard>=2.12",
        "torch>=2.0",
        "numpy>=1.21",
        "protobuf>=3.20",
        "werkzeug>=2.0",
        "scipy>=1.7",
        "tqdm>=4.0",
    ],
    extras_require={
        "demo": ["scikit-learn>=1.0", "tqdm>=4.0"],
        "test": ["pytest>=7", "playwright>=1.40", "scikit-learn>=1.0", "tqdm>=4.0", "tensorboardX>=2.6", "hypothesis>=6",
                 "threadpoolctl>=3"],
    },
    entry_points={
        "tensorboard_plugins": [
            "rnn_units = tensorboard_rnn_units.plugin:RnnUnitsLoader",
        ],
    },
)

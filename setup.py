"""The one thing pyproject.toml cannot say: map the repository's top-level data folders into the package.

trained_models/ ships as probe.shipped.models and data/ as probe.shipped.corpora (found at run time with
importlib.resources: probe/resources.py); the repository keeps its layout. Everything else is in pyproject.toml.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["probe", "probe.*", "dashboards", "dashboards.*"])
    + ["probe.shipped.models", "probe.shipped.corpora"],
    package_dir={"probe.shipped.models": "trained_models", "probe.shipped.corpora": "data"},
)

"""setuptools entry: metadata and dependencies live in setup.cfg.

Only the package layout is here: the top-level ``configs/`` folder (the configs' one source) is
installed as the ``jaxpapers.configs`` package, so a non-editable install carries the configs.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["jaxpapers", "jaxpapers.*"]) + ["jaxpapers.configs"],
    package_dir={"jaxpapers.configs": "configs"},
)

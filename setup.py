"""Build script: the pure-Python package always; the CUDA extension wdsr_fast._C where it can be built."""
from setuptools import setup

setup()

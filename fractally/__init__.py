"""Fractal.ly core: the render spec, kernels, tiling, codecs and object store, free of any web framework."""

__version__ = "0.1.0"

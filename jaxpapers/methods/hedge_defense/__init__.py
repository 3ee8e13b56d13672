"""``hedge_defense``: test-time defensive perturbations (Wu et al. 2021), evaluated non-adaptively
(the paper's protocol) and adaptively (Croce et al. 2022). An analysis method: ``run``."""

from jaxpapers.methods.hedge_defense.run import run

kind = "analysis"

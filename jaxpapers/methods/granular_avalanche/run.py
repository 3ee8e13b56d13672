"""The analysis method's entry point: simulate (or read) tracks, analyse, report.

`run(config, workdir)` either simulates the sheared rough and smooth packings with the jitted
frictional DEM (config.data.name == 'simulate') or reads a track file (config.data.name ==
'tracks', config.data.path), then runs the analysis pipeline and writes figures, the track
files, `summary.json` and `report.md` into the workdir.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

from jaxpapers import stopping
from jaxpapers.methods.granular_avalanche import experiment, io, pipeline, simulate


def _systems(config) -> dict[str, tuple[float, float]]:
    s = config.surfaces
    return {"rough": (s.rough_mu, s.rough_mu_roll), "smooth": (s.smooth_mu, s.smooth_mu_roll)}


def run(config, workdir: str) -> dict[str, float]:
    """Simulates (or reads) tracks, analyses them, writes the report; returns flat numbers."""
    os.makedirs(workdir, exist_ok=True)
    t_start = time.time()
    results, summaries = {}, {}
    if config.data.name == "tracks":
        tracks = io.load_tracks(config.data.path)
        summaries["tracks"], results["tracks"] = pipeline.analyse(
            tracks, config.analysis, workdir, "tracks"
        )
    elif config.data.name == "simulate":
        if config.sim.inertial_number > 1e-3:
            print(
                f"WARNING: inertial number {config.sim.inertial_number:g} > 1e-3: the shear is "
                "not quasi-static; avalanche statistics may be rate dependent."
            )
        # SIGTERM/SIGINT stop the simulations at the end of a chunk, after saving it (README,
        # "Stopping and resuming"); jaxpapers.main prints how to resume.
        with stopping.on_signals(signal.SIGTERM, signal.SIGINT):
            for tag, (mu, mu_roll) in _systems(config).items():
                summaries[tag], results[tag] = _simulate_and_analyse(
                    config, workdir, tag, mu, mu_roll
                )
        pipeline.joint_figures(workdir, results)
    else:
        raise ValueError(f"data.name must be 'simulate' or 'tracks', got {config.data.name!r}.")
    with open(os.path.join(workdir, "summary.json"), "w") as fh:
        json.dump(summaries, fh, indent=2, default=float)
    _report(workdir, config, summaries, time.time() - t_start)
    flat = {
        f"{t}/{k}": float(v)
        for t, s in summaries.items()
        for k, v in s.items()
        if isinstance(v, (int, float))
    }
    return {k: v for k, v in flat.items() if not math.isnan(v)} | {
        k: v for k, v in flat.items() if math.isnan(v)
    }


def _simulate_and_analyse(config, workdir: str, tag: str, mu: float, mu_roll: float):
    """One system: simulate (or restore its finished checkpoint), save its tracks, analyse."""
    # A stop requested during the previous system's analysis takes effect here: the finished
    # simulations are checkpointed (a re-run restores them without stepping).
    if stopping.requested() is not None:
        raise stopping.Stopped(
            f"stopped before the {tag} simulation; the finished ones are saved in "
            f"{os.path.join(workdir, 'checkpoints')}",
            stopping.requested(),
        )
    print(f"[granular_avalanche] {tag}: mu={mu}, mu_roll={mu_roll}, N={config.sim.n} free spheres")
    t0 = time.time()
    # Always a directory: ckpt_every=0 only drops the periodic saves, while the final record
    # (a re-run skips the finished simulation) and a stop's record are kept.
    ckpt = os.path.join(workdir, "checkpoints", tag)
    try:
        tracks = simulate.shear_experiment(config.sim, mu, mu_roll, config.seed, ckpt_dir=ckpt)
    except experiment.Interrupted as e:
        raise stopping.Stopped(f"{tag} simulation {e} in {ckpt}", e.signum) from e
    meta = tracks.pop("meta")
    tracks.pop("final_state")
    io.save_tracks(os.path.join(workdir, f"tracks_{tag}.npz"), tracks)
    summary, arrays = pipeline.analyse(tracks, config.analysis, workdir, tag)
    summary.update(
        mu=mu,
        mu_roll=mu_roll,
        inertial_number=meta["inertial_number"],
        dem_steps=meta["steps"],
        sim_seconds=time.time() - t0,
        gap_over_d=meta["height"],
        lees_edwards=float(meta["boundary"] == "lees_edwards"),
        n_free=meta["n_free"],
    )
    print(
        f"[granular_avalanche] {tag}: {summary['n_drops']} drops "
        f"({summary['n_large']} large, CV of intervals "
        f"{summary['cv_large_interval']:.2f}), xi {summary['xi_mean_over_d']:.2f} d, "
        f"non-affine rms {summary['nonaffine_rms_over_d']:.2e} d"
    )
    return summary, arrays


def _report(workdir: str, config, summaries: dict, seconds: float) -> None:
    keys = [
        "n_drops",
        "n_large",
        "max_drop",
        "mean_large_interval",
        "cv_large_interval",
        "tau",
        "mean_stress",
        "nonaffine_rms_over_d",
        "sqrt_d2min_over_d",
        "xi_mean_over_d",
        "xi_large_over_quiet",
        "drop_vs_xi_slope",
        "drop_vs_xi_slope_lo",
        "drop_vs_xi_slope_hi",
        "drop_vs_xi_r2",
        "drop_vs_xi_n",
    ]
    tags = list(summaries)
    lines = [
        f"# Granular avalanche report ({config.preset}, {seconds:.0f} s)",
        "",
        "| quantity | " + " | ".join(tags) + " |",
        "|---|" + "---|" * len(tags),
    ]
    for k in keys:
        lines.append(
            f"| {k} | "
            + " | ".join(f"{summaries[t].get(k, float('nan')):.4g}" for t in tags)
            + " |"
        )
    lines += [
        "",
        "Figures: " + ", ".join(sorted(f for f in os.listdir(workdir) if f.endswith(".png"))),
        "",
        "Definitions: see jaxpapers/methods/granular_avalanche/README.md.",
    ]
    with open(os.path.join(workdir, "report.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")

"""Robust accuracy of a trained classifier run (clean, PGD, CW, APGD, FAB, Square, AutoAttack).

    python -m jaxpapers.tools.robust --workdir W --attacks aa_standard,pgd --eps 0.1 --n 1000

W is a workdir written by ``jaxpapers.main`` for a method with a ``logits_fn`` hook (e.g. ``rat``).
Attacks the first ``--n`` points of ``--split`` (default: the config's ``data.eval_split``) with
``jaxpapers.evals.robust.evaluate``; prints the table and writes ``robust_<attacks>[_<split>].json``
and a picture grid into W.
"""

from __future__ import annotations

from absl import flags

from jaxpapers.tools import cli


def define_flags() -> None:
    """Flags exist only when run as a program: importing several tools (or a tool and
    ``jaxpapers.main``) into one process must not define the same flag twice."""
    flags.DEFINE_string("workdir", None, "Run directory written by jaxpapers.main.")
    flags.DEFINE_string(
        "attacks",
        "aa_standard",
        "Comma-separated attacks (evals.robust.IMPLEMENTED or aa_standard).",
    )
    flags.DEFINE_float("eps", None, "L-inf radius (default: the run's config.attack.eps).")
    flags.DEFINE_integer("n", 1000, "Attack the first n points of the split.")
    flags.DEFINE_integer("batch_size", 500, "Points per attack batch.")
    flags.DEFINE_integer("cascade", 1, "1: AutoAttack cascade; 0: each attack alone.")
    flags.DEFINE_integer("seed", 0, "Attack randomness.")
    flags.DEFINE_string(
        "split",
        "",
        "Data split to attack (default: config.data.eval_split); 'train' with the same n gives the "
        "train-side robust accuracy of the robust-overfitting gap.",
    )
    flags.mark_flag_as_required("workdir")


def main(argv) -> None:
    del argv
    F = flags.FLAGS
    import jax
    import numpy as np

    from jaxpapers import data, methods, runs
    from jaxpapers.evals import robust

    config = runs.read_config(F.workdir)
    if methods.hook(methods.get(config.method), "logits_fn") is None:
        raise cli.BadInput(f"Method {config.method!r} has no logits_fn(state, config) hook.")
    run = runs.load_run(F.workdir, config=config)
    logits_fn = run.logits_fn
    eps = F.eps if F.eps is not None else float(config.attack.eps)
    split = F.split or config.data.eval_split
    test = data.load(config.data, split)
    x = test["image"][: F.n].astype(np.float32) / 255.0
    y = test["label"][: F.n]
    print(
        f"{config.method}: {len(x)} {split} points, eps {eps}, attacks {F.attacks}",
        flush=True,
    )
    res = robust.evaluate(
        logits_fn,
        x,
        y,
        jax.random.key(F.seed),
        eps=eps,
        attacks_to_run=F.attacks.split(","),
        cascade=bool(F.cascade),
        batch_size=F.batch_size,
        verbose=True,
    )
    print(robust.format_table(res))
    prefix = "robust_" + F.attacks.replace(",", "_") + (f"_{split}" if F.split else "")
    print("wrote", robust.save(res, run.workdir, x, eps, prefix=prefix))


if __name__ == "__main__":
    define_flags()
    cli.run(main, __doc__)

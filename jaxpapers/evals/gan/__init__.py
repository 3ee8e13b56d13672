"""GAN evaluation: FD/FID, KID, IS and precision/recall with named feature networks.

Entry point: ``evaluator.evaluate_generator(sample_fn, cfg, workdir)`` with
``evaluator.default_eval_config()``. Feature networks: ``fmnist`` (FD-FMNIST, a small
classifier trained by this suite, weights shipped in ``weights/``) and ``inception`` (the FID
Inception-v3, needs the user's pt_inception-2015-12-05 weight file).
"""

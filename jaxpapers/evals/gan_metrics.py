"""``python -m jaxpapers.evals.gan_metrics``: FD/FID, KID, IS, precision/recall from the shell.

Scores a directory / ``.npz`` / ``.npy`` of images, or a checkpoint of a GAN method
(``stylegan2_dgl``, ``biggan_dgl``), against a data set; see ``jaxpapers.evals.gan.score``.
"""

from jaxpapers.evals.gan.score import main

if __name__ == "__main__":
    main()

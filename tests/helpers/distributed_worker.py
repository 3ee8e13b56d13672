"""One process of the two-process loopback test (run by tests/test_distributed.py).

Trains the classifier smoke config for a few steps through the suite's own trainer pieces
(mesh over both processes, per-process batch slices, the jitted step) and prints a checksum of
the final replicated params so the test can compare the two processes.
"""

import hashlib
import os

os.environ["JAXPAPERS_DISTRIBUTED"] = "1"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxpapers import config_lib, data, methods, parallel, trainer  # noqa: E402


def main() -> None:
    parallel.maybe_initialize_distributed()
    assert jax.process_count() == 2, jax.process_count()
    config = config_lib.load_config_file("configs/classifier.py", "smoke,num_train_steps=3")
    method = methods.get("classifier")
    mesh = parallel.make_mesh()
    with jax.set_mesh(mesh):
        state, shardings = trainer.init(method, config, mesh)
        step_fn = trainer.compile_step(method, config, mesh, shardings)
        loader = data.Loader(trainer.train_source(method, config), config.batch_size, mesh, seed=0)
        for _ in range(config.num_train_steps):
            state, m = step_fn(state, next(loader))
        loader.close()
        leaves = [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(state.params)]
    digest = hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()
    loss = float(np.asarray(m["loss"].addressable_data(0)))
    print(f"RESULT process={jax.process_index()} loss={loss!r} params_sha256={digest}", flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()

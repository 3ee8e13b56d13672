import functools, copy, jax, jax.numpy as jnp, numpy as np
from jaxpapers import config_lib, testing, methods
from jaxpapers.methods.biggan_dgl import steps
cfg = config_lib.load_config_file("configs/biggan_dgl.py", "smoke,teacher.steps=0,optim.g.name=sgd,optim.d.name=sgd,gan.num_d_steps=1")
c16 = copy.deepcopy(cfg); config_lib.set_dotted(c16, "model.dtype", "bfloat16")
st = steps.init_state(jax.random.key(0), cfg)
batch = testing.make_batches(methods.get("biggan_dgl"), cfg, 1)[0]
out = {}
for name, c in (("f32", cfg), ("bf16", c16)):
    out[name] = jax.jit(functools.partial(steps.train_step, config=c, phase=1))(st, batch)
    print(name, {k: round(float(v), 4) for k, v in out[name][1].items()}, flush=True)
a0 = st.student
for f in ("d", "g", "d_vars"):
    A, B, O = (jax.tree_util.tree_leaves_with_path(getattr(o, f)) for o in (out["f32"][0].student, out["bf16"][0].student, a0))
    for (p, a), (_, b), (_, o) in zip(A, B, O):
        n = np.linalg.norm(a - o)
        if n > 0: print(f, jax.tree_util.keystr(p), round(float(np.linalg.norm(b - a) / n), 4), float(n), float(np.linalg.norm(o)))

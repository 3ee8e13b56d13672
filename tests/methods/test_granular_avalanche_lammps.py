"""The JAX DEM against LAMMPS (pair_style gran/hooke/history + fix nve/sphere), same inputs.

Runs only where the `lmp` executable exists (Debian: `apt-get install lammps`, which ships the
GRANULAR package). Cases: a damped head-on collision, an oblique sliding contact with spin on a
frozen sphere (Coulomb cap active), a 40-sphere frictional gas in a periodic box and a dense
64-sphere packing with persistent contacts.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest

from jaxpapers.methods.granular_avalanche import contact, dem

LMP = shutil.which("lmp") or shutil.which("lmp_serial")
pytestmark = pytest.mark.skipif(LMP is None, reason="LAMMPS (lmp) is not installed")
DENS = 6.0 / math.pi


def _lammps(tmp, pos, vel, omega, radius, box, frozen, kn, kt, gn, gt, mu, dt, steps):
    f = lambda x: repr(float(x))  # noqa: E731  (full precision, plain float text)
    rows = [
        f"{i + 1} 1 {f(2 * radius[i])} {f(DENS)} {f(pos[i, 0])} {f(pos[i, 1])} {f(pos[i, 2])}"
        for i in range(len(pos))
    ]
    vrows = [
        f"{i + 1} " + " ".join(repr(float(x)) for x in (*vel[i], *omega[i]))
        for i in range(len(pos))
    ]
    data = [
        "lammps comparison",
        "",
        f"{len(pos)} atoms",
        "1 atom types",
        "",
        *[f"{f(lo)} {f(hi)} {a}lo {a}hi" for (lo, hi), a in zip(box, "xyz", strict=True)],
        "",
        "Atoms # sphere",
        "",
        *rows,
        "",
        "Velocities",
        "",
        *vrows,
        "",
    ]
    (tmp / "data.txt").write_text("\n".join(data))
    fz = [str(i + 1) for i in np.flatnonzero(frozen)]
    lines = [
        "units lj",
        "atom_style sphere",
        "boundary p p p",
        "newton off",
        "comm_modify vel yes",
        "read_data data.txt",
        f"pair_style gran/hooke/history {kn!r} {kt!r} {gn!r} {gt!r} {mu!r} 1",
        "pair_coeff * *",
        "neighbor 0.3 bin",
        "neigh_modify delay 0 every 1 check yes",
        f"timestep {dt!r}",
    ]
    if fz:
        lines += [
            f"group frozen id {' '.join(fz)}",
            "group mobile subtract all frozen",
            "fix 1 mobile nve/sphere",
            "fix 2 frozen freeze",
        ]
    else:
        lines += ["fix 1 all nve/sphere"]
    lines += [
        f"run {steps}",
        "write_dump all custom out.dump id xu yu zu vx vy vz omegax omegay "
        "omegaz modify format float %.17g sort id",
    ]
    (tmp / "in.test").write_text("\n".join(lines) + "\n")
    subprocess.run(
        [LMP, "-in", "in.test", "-log", "none", "-screen", "none"],
        cwd=tmp,
        check=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    out = np.loadtxt(tmp / "out.dump", skiprows=9)
    return out[:, 1:4], out[:, 4:7], out[:, 7:10]


def _ours(pos, vel, omega, radius, box_len, frozen, kn, kt, gn, gt, mu, dt, steps):
    with jax.enable_x64(True):
        kind = np.where(frozen, dem.BOTTOM, dem.FREE)
        parts = dem.make_particles(radius, kind, DENS, box_len=box_len)
        model = contact.make_model("hooke", kn=kn, kt=kt, gamman=gn, gammat=gt, mu=mu)
        sp = dem.SimParams(model=model, dt=dt, k_slots=16, skin=0.3)
        st = dem.init_state(pos, vel, omega, parts, sp)
        st, _ = dem.run(st, parts, sp, steps)
        return np.asarray(st.pos), np.asarray(st.vel), np.asarray(st.omega)


def _compare(tmp, pos, vel, omega, radius, frozen, steps, mu=0.5, box=5.0):
    kn, kt, gn, gt, dt = 1e3, 2.0 / 7.0 * 1e3, 20.0, 10.0, 1e-3
    ref = _lammps(
        tmp, pos, vel, omega, radius, [(0.0, box)] * 3, frozen, kn, kt, gn, gt, mu, dt, steps
    )
    got = _ours(pos, vel, omega, radius, (box,) * 3, frozen, kn, kt, gn, gt, mu, dt, steps)
    for name, a, b in zip(("x", "v", "omega"), got, ref, strict=True):
        scale = max(np.abs(b).max(), 1e-12)
        err = np.abs(a - b).max() / scale
        print(f"LAMMPS vs JAX {name}: max |diff| / max |LAMMPS| = {err:.2e}")
        assert err < 1e-6, f"{name}: max relative difference {err:.2e}"
    return got, ref


def test_head_on_collision_matches_lammps(tmp_path):
    pos = np.array([[1.0, 1.0, 1.0], [2.05, 1.0, 1.0]])
    vel = np.array([[0.4, 0.0, 0.0], [-0.4, 0.0, 0.0]])
    got, ref = _compare(
        tmp_path, pos, vel, np.zeros((2, 3)), np.array([0.5, 0.5]), np.zeros(2, bool), 400
    )
    assert got[1][0, 0] < 0 < got[1][1, 0]  # they bounced


def test_sliding_contact_with_spin_on_frozen_sphere_matches_lammps(tmp_path):
    pos = np.array([[2.0, 2.0, 2.0], [2.0, 2.995, 2.0]])
    vel = np.array([[0.0, 0.0, 0.0], [0.6, -0.05, 0.1]])
    omega = np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 2.0]])
    got, ref = _compare(
        tmp_path, pos, vel, omega, np.array([0.5, 0.5]), np.array([True, False]), 400
    )
    assert np.abs(got[2][1]).max() > 0  # friction torque acted


def test_frictional_gas_in_periodic_box_matches_lammps(tmp_path):
    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:40]
    pos = (g + 0.5) * 5.0 / 4 + rng.uniform(-0.05, 0.05, (40, 3))
    vel = rng.normal(0, 1.0, (40, 3))
    omega = rng.normal(0, 1.0, (40, 3))
    radius = rng.uniform(0.45, 0.55, 40)
    _compare(tmp_path, pos, vel, omega, radius, np.zeros(40, bool), 400)


def test_dense_overlapping_packing_matches_lammps(tmp_path):
    # 64 spheres on a lattice 2 % tighter than d (volume fraction 0.55): every sphere starts with
    # 6 persistent frictional contacts, which exercises the history through the rebuilds.
    rng = np.random.default_rng(1)
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = (g + 0.5) * 0.98 + rng.uniform(-0.01, 0.01, (64, 3))
    vel = rng.normal(0, 0.05, (64, 3))
    got, ref = _compare(
        tmp_path,
        pos,
        vel,
        np.zeros((64, 3)),
        np.full(64, 0.5),
        np.zeros(64, bool),
        1000,
        box=3.92,
    )
    assert np.abs(got[2]).max() > 1e-3  # friction torques spun the spheres up


@pytest.mark.slow  # ~15 s alone (two compilations + 5000 compression steps)
def test_wall_driven_shear_cell_matches_lammps(tmp_path):
    """The shear cell itself: a packing compressed by our servo wall, then sheared at constant
    volume by the top wall moving at V (LAMMPS: bottom wall `fix freeze`, top wall `fix move`
    with a 1e15 density so its effective mass equals ours, y not periodic). The wall force
    (shear stress and pressure sensor) and the particles must agree along the trajectory."""
    from configs import granular_avalanche as cfg_mod
    from jaxpapers.methods.granular_avalanche import shear_cell

    kn, kt, gn, gt, mu, dt, vel_wall = 1e3, 2e3 / 7, 20.0, 10.0, 0.5, 1e-3, 0.05
    with jax.enable_x64(True):
        cell = shear_cell.build_cell(cfg_mod.get_config("smoke").sim, 0)
        kind, rad = cell["kind"], cell["radius"]
        top, free = kind == dem.TOP, kind == dem.FREE
        lx, lz = cell["box"][0], cell["box"][2]
        model = contact.make_model("hooke", kn=kn, kt=kt, gamman=gn, gammat=gt, mu=mu)
        parts = dem.make_particles(
            rad, kind, DENS, np.where(top[:, None], cell["pos"], 0.0), cell["box"]
        )
        sp = dem.SimParams(
            model=model,
            dt=dt,
            k_slots=16,
            skin=0.3,
            pressure=5.0,
            area=lx * lz,
            wall_mass=lx * lz,
            wall_damping=8.0,
            servo=True,
            driven=True,
            k_drive=500.0,
        )
        n = len(rad)
        st = dem.init_state(cell["pos"], np.zeros((n, 3)), np.zeros((n, 3)), parts, sp)
        st, _ = dem.run(st, parts, sp, 4000)  # compression under P
        pos0 = np.asarray(st.pos)
        parts = dem.make_particles(rad, kind, DENS, np.where(top[:, None], pos0, 0.0), cell["box"])
        sp = dem.SimParams(model=model, dt=dt, k_slots=16, skin=0.3, shear_velocity=vel_wall)
        st = dem.init_state(pos0, np.zeros((n, 3)), np.zeros((n, 3)), parts, sp)
        st, obs = dem.run(st, parts, sp, 1000)
        obs = np.asarray(obs)
    # The packing carries the load at the switch and the moving wall drags it.
    assert obs[:, 5].max() > 0.5 * lx * lz and np.abs(obs[:, 4]).max() > 0.1 * lx * lz

    f = lambda x: repr(float(x))  # noqa: E731
    dens = np.where(top, 1e15, DENS)
    rows = [
        f"{i + 1} 1 {f(2 * rad[i])} {f(dens[i])} " + " ".join(f(x) for x in pos0[i])
        for i in range(n)
    ]
    ylo, yhi = pos0[:, 1].min() - 2.0, pos0[:, 1].max() + 2.0
    data = [
        "shear cell",
        "",
        f"{n} atoms",
        "1 atom types",
        "",
        f"0.0 {f(lx)} xlo xhi",
        f"{f(ylo)} {f(yhi)} ylo yhi",
        f"0.0 {f(lz)} zlo zhi",
        "",
        "Atoms # sphere",
        "",
        *rows,
        "",
    ]
    (tmp_path / "data.txt").write_text("\n".join(data))
    ids = lambda m: " ".join(str(i + 1) for i in np.flatnonzero(m))  # noqa: E731
    script = [
        "units lj",
        "atom_style sphere",
        "boundary p f p",
        "newton off",
        "comm_modify vel yes",
        "read_data data.txt",
        f"pair_style gran/hooke/history {kn!r} {kt!r} {gn!r} {gt!r} {mu!r} 1",
        "pair_coeff * *",
        "neighbor 0.3 bin",
        "neigh_modify delay 0 every 1 check yes",
        f"timestep {dt!r}",
        f"group top id {ids(top)}",
        f"group bottom id {ids(kind == dem.BOTTOM)}",
        f"group mobile id {ids(free)}",
        "fix 1 mobile nve/sphere",
        "fix 2 bottom freeze",
        f"fix 3 top move linear {vel_wall!r} 0.0 0.0",
        "compute ftop top reduce sum fx fy",
        "thermo_style custom step c_ftop[1] c_ftop[2]",
        "thermo_modify format float %.17g norm no",
        "thermo 100",
        "run 1000",
        "write_dump mobile custom out.dump id xu yu zu vx vy vz modify format float %.17g sort id",
    ]
    (tmp_path / "in.test").write_text("\n".join(script) + "\n")
    subprocess.run(
        [LMP, "-in", "in.test", "-log", "log.txt", "-screen", "none"],
        cwd=tmp_path,
        check=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    log = (tmp_path / "log.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(log) if line.split()[:1] == ["Step"])
    thermo = np.array([[float(x) for x in line.split()] for line in log[start + 1 : start + 12]])
    ours = obs[99::100, 4:6]
    err = np.abs(ours - thermo[1:, 1:]).max() / np.abs(thermo[1:, 1:]).max()
    print(f"LAMMPS vs JAX shear cell wall force (Fx, Fy) over 1000 steps: {err:.2e}")
    assert err < 1e-6
    out = np.loadtxt(tmp_path / "out.dump", skiprows=9)
    np.testing.assert_allclose(np.asarray(st.pos)[free], out[:, 1:4], atol=1e-9)


@pytest.mark.slow  # ~20 s: a grown packing + 600 LE steps by both codes
def test_lees_edwards_shear_stress_matches_lammps_deform(tmp_path):
    """Lees-Edwards at constant volume vs LAMMPS `fix deform xy erate ... remap v` (triclinic
    box whose tilt is the LE offset) + `fix nve/sphere`, same packing, Hooke with history.
    LAMMPS updates the tilt at the end of a step, so its forces at step n see the offset of
    step n - 1: our offset is started one step behind (after the same setup forces) to match.
    Compared: the configurational virial P_xy, P_yy and P_xx every 50 steps."""
    from configs import granular_avalanche as cfg_mod
    from jaxpapers.methods.granular_avalanche import simulate

    kn, kt, gn, gt, mu, dt, gdot = 1e3, 2e3 / 7, 20.0, 10.0, 0.5, 1e-3, 0.05
    steps = 600
    with jax.enable_x64(True):
        sim = cfg_mod.get_config("smoke_le,sim.kn=1000.0,sim.total_strain=0.002").sim
        prep = simulate.shear_experiment(sim, mu, 0.0, 0, log=lambda s: None)
        st0 = prep["final_state"]
        lx, ly, lz = prep["meta"]["box"]
        rad = np.asarray(prep["radius"])
        n = len(rad)
        box = (lx, ly, lz)
        pos0 = np.mod(np.asarray(st0.pos), np.array(box))  # offset 0 at the start: plain wrap
        rng = np.random.default_rng(1)
        vel0 = rng.normal(0.0, 0.02, (n, 3))
        vel0[:, 0] += gdot * pos0[:, 1]
        om0 = rng.normal(0.0, 0.05, (n, 3))
        model = contact.make_model("hooke", kn=kn, kt=kt, gamman=gn, gammat=gt, mu=mu)
        parts = dem.make_particles(rad, None, DENS, None, box)
        sp = dem.SimParams(
            model=model, dt=dt, k_slots=16, skin=0.3, lees_edwards=True, shear_rate=gdot
        )
        st = dem.init_state(pos0, vel0, om0, parts, sp)
        st = st.replace(wall=st.wall.at[0].set(np.mod(-gdot * ly * dt, lx)))

        @jax.jit
        def run(st):
            def one(s, _):
                s = dem.rebuild(s, parts, sp)

                def inner(x, _):
                    x = dem.step(x, parts, sp, virial=True)
                    return x, x.virial

                return jax.lax.scan(inner, s, None, length=10)

            return jax.lax.scan(one, st, None, length=steps // 10)

        st, vir = run(st)
        vir = np.asarray(vir).reshape(steps, 3, 3) / (lx * ly * lz)

    f = lambda x: repr(float(x))  # noqa: E731
    rows = [
        f"{i + 1} 1 {f(2 * rad[i])} {f(DENS)} " + " ".join(f(x) for x in pos0[i]) for i in range(n)
    ]
    vrows = [f"{i + 1} " + " ".join(f(x) for x in (*vel0[i], *om0[i])) for i in range(n)]
    data = [
        "lees-edwards",
        "",
        f"{n} atoms",
        "1 atom types",
        "",
        f"0.0 {f(lx)} xlo xhi",
        f"0.0 {f(ly)} ylo yhi",
        f"0.0 {f(lz)} zlo zhi",
        "0.0 0.0 0.0 xy xz yz",
        "",
        "Atoms # sphere",
        "",
        *rows,
        "",
        "Velocities",
        "",
        *vrows,
        "",
    ]
    (tmp_path / "data.txt").write_text("\n".join(data))
    script = [
        "units lj",
        "atom_style sphere",
        "boundary p p p",
        "newton off",
        "comm_modify vel yes",
        "read_data data.txt",
        f"pair_style gran/hooke/history {kn!r} {kt!r} {gn!r} {gt!r} {mu!r} 1",
        "pair_coeff * *",
        "neighbor 0.3 bin",
        "neigh_modify delay 0 every 1 check yes",
        f"timestep {dt!r}",
        "fix 1 all nve/sphere",
        f"fix 2 all deform 1 xy erate {gdot!r} remap v",
        "compute pv all pressure NULL virial",
        "thermo_style custom step c_pv[1] c_pv[2] c_pv[4]",
        "thermo_modify format float %.17g norm no",
        "thermo 50",
        f"run {steps}",
    ]
    (tmp_path / "in.test").write_text("\n".join(script) + "\n")
    subprocess.run(
        [LMP, "-in", "in.test", "-log", "log.txt", "-screen", "none"],
        cwd=tmp_path,
        check=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    log = (tmp_path / "log.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(log) if line.split()[:1] == ["Step"])
    nrow = steps // 50 + 1
    thermo = np.array(
        [[float(x) for x in line.split()] for line in log[start + 1 : start + 1 + nrow]]
    )
    ours = vir[49::50][:, [0, 1, 0], [0, 1, 1]]  # P_xx, P_yy, P_xy
    ref = thermo[1:, 1:]
    err = np.abs(ours - ref).max() / np.abs(ref[:, :2]).max()
    print(
        f"LAMMPS vs JAX Lees-Edwards virial (P_xx, P_yy, P_xy) over {steps} steps: {err:.2e}; "
        f"P_xy from {ref[0, 2]:.4f} to {ref[-1, 2]:.4f}"
    )
    assert np.abs(ref[:, 2]).max() > 1e-3  # a real shear stress builds up
    assert err < 1e-6

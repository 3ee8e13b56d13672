"""Frictional sphere-sphere contact law (Hooke/Hertz + Cundall-Strack history + rolling resistance).

The pair force follows LAMMPS' ``pair_style gran/hooke/history`` and ``gran/hertz/history``
term by term (same sign conventions, same history rotation, same Coulomb rescaling of the
spring + dashpot force, Luding 2008 eq. 21) so that a LAMMPS run with the same parameters can be
compared to 1e-6 relative. Two additions that LAMMPS' old pair styles lack:

* Hertz normal damping of Tsuji type, ``F_d = gamma_hz sqrt(m* K) delta^(1/4) v_n`` with
  ``K = k_n sqrt(R*)``. It makes the restitution independent of the impact speed; ``gamma_hz`` is
  obtained from the requested restitution by solving the dimensionless collision ODE exactly
  (`hertz_gamma_from_restitution`), not from the usual approximate 2 sqrt(5/6) beta formula.
* Elastic-plastic spring rolling resistance (type "EPSD2", Ai et al. 2011): a rolling torque
  history ``M_r += -k_r (omega_rel)_t dt``, capped at ``mu_r R* |F_n|``, with
  ``k_r = 2.25 k_n,eff mu_r^2 R*^2``. Rolling resistance is the usual DEM proxy for the
  interlocking of surface asperities (roughness) beyond what a friction coefficient expresses.

Each contact is evaluated once, for the pair (i, j) with i < j of the half neighbour list, which
stores its history in that orientation. Every term is an exact sign flip under i <-> j, so the
reaction on j is -F (and the torque -R_j (d x F_t) / r - M_roll): `pair_forces` returns both
torques and the caller adds +F to i and -F to j, which conserves linear momentum exactly.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class ContactModel:
    """Contact parameters: a pytree whose numbers are traced leaves (no recompilation when they
    change) and whose structural switches are static.

    Attributes:
        normal: (static) 'hooke' (F_n = k_n delta - m* gamma_n v_n, LAMMPS convention) or
            'hertz' (F_n = k_n sqrt(R* delta) delta
            - gamma_n sqrt(m* k_n sqrt(R*)) delta^(1/4) v_n).
        kn: normal stiffness (Hooke: force/length; Hertz: k_n = 4/3 E*).
        kt: tangential stiffness (Hertz: multiplied by sqrt(R* delta) as in LAMMPS).
        gamman: normal damping (Hooke: 1/time; Hertz: dimensionless Tsuji coefficient).
        gammat: tangential damping (1/time, times m*; Hertz: times sqrt(R* delta)).
        mu: Coulomb friction coefficient (roughness proxy).
        mu_roll: rolling-resistance coefficient (used only when `rolling`).
        rolling: (static) enable the rolling-resistance torque.
        limit_damping: (static) clamp the normal force at >= 0 (no attraction from the dashpot).
    """

    normal: str = struct.field(pytree_node=False, default="hooke")
    kn: float = 1e4
    kt: float = 1e4 * 2.0 / 7.0
    gamman: float = 0.0
    gammat: float = 0.0
    mu: float = 0.5
    mu_roll: float = 0.0
    rolling: bool = struct.field(pytree_node=False, default=False)
    limit_damping: bool = struct.field(pytree_node=False, default=False)


def make_model(normal: str = "hooke", **kw) -> ContactModel:
    """Validated ContactModel; `rolling` is switched on when mu_roll > 0."""
    if normal not in ("hooke", "hertz"):
        raise ValueError(f"ContactModel.normal must be 'hooke' or 'hertz', got {normal!r}.")
    for name in ("kn", "kt", "gamman", "gammat", "mu", "mu_roll"):
        if float(kw.get(name, 0.0)) < 0:
            raise ValueError(f"ContactModel.{name} must be >= 0, got {kw[name]}.")
    kw.setdefault("rolling", float(kw.get("mu_roll", 0.0)) > 0)
    return ContactModel(normal=normal, **kw)


def hooke_gamma_from_restitution(e: float, kn: float, meff: float) -> float:
    """Damping gamma_n (1/time) of the linear spring-dashpot that gives restitution ``e``.

    m* x'' + m* gamma x' + k x = 0 has omega_0^2 = k/m*, a contact time pi/omega_d with
    omega_d^2 = omega_0^2 - gamma^2/4 and e = exp(-gamma pi / (2 omega_d)); inverting gives
    gamma = 2 omega_0 (-ln e) / sqrt(pi^2 + ln^2 e).
    """
    if not 0.0 < e <= 1.0:
        raise ValueError(f"Restitution must be in (0, 1], got {e}.")
    w0 = math.sqrt(kn / meff)
    le = -math.log(e)
    return 2.0 * w0 * le / math.sqrt(math.pi**2 + le**2)


def hooke_contact_time(kn: float, meff: float, gamman: float) -> float:
    """Duration pi/omega_d of an undamped-or-damped Hooke collision (no force clamp)."""
    return math.pi / math.sqrt(kn / meff - 0.25 * gamman**2)


def _hertz_restitution_dimless(gamma: float, n_steps: int = 20000) -> float:
    """Restitution of x'' = -x^{3/2} - gamma x^{1/4} x', x(0)=0, x'(0)=1 (RK4 in numpy)."""
    # The scaling x -> X s, t -> T tau removes the impact speed: e depends on gamma only.
    tc0 = 3.2187  # undamped contact time in these units (2 * 1.4716 * (5/4)^(2/5)); upper bound
    h = 2.0 * tc0 / n_steps

    def rhs(y: np.ndarray) -> np.ndarray:
        x, v = y
        xp = max(x, 0.0)
        return np.array([v, -(xp**1.5) - gamma * xp**0.25 * v])

    y = np.array([0.0, 1.0])
    for _ in range(n_steps):
        k1 = rhs(y)
        k2 = rhs(y + 0.5 * h * k1)
        k3 = rhs(y + 0.5 * h * k2)
        k4 = rhs(y + h * k3)
        y_new = y + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        if y_new[0] < 0.0:  # left contact: interpolate velocity at x = 0
            frac = y[0] / (y[0] - y_new[0])
            return float(-(y[1] + frac * (y_new[1] - y[1])))
        y = y_new
    return 0.0  # still in contact after twice the elastic contact time: over-damped, e ~ 0


@functools.lru_cache(maxsize=64)
def hertz_gamma_from_restitution(e: float) -> float:
    """Dimensionless Tsuji damping coefficient that gives restitution ``e`` exactly (bisection)."""
    if not 0.0 < e <= 1.0:
        raise ValueError(f"Restitution must be in (0, 1], got {e}.")
    if e == 1.0:
        return 0.0
    lo, hi = 0.0, 4.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _hertz_restitution_dimless(mid, 4000) > e:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def hertz_contact_time(kn: float, reff: float, meff: float, v0: float) -> float:
    """Analytic contact time of an undamped Hertz collision, F = k_n sqrt(R*) delta^{3/2}.

    delta_max = (5 m* v0^2 / (4 k_n sqrt(R*)))^{2/5} and t_c = 2 delta_max / v0 * I with
    I = int_0^1 (1 - x^{5/2})^{-1/2} dx = sqrt(pi) Gamma(7/5) / Gamma(9/10).
    """
    integral = math.sqrt(math.pi) * math.gamma(1.4) / math.gamma(0.9)
    dmax = (5.0 * meff * v0**2 / (4.0 * kn * math.sqrt(reff))) ** 0.4
    return 2.0 * dmax / v0 * integral


# Vectors are 3-tuples of same-shaped arrays (structure of arrays): every operation of the contact
# law is then elementwise on (P,) arrays, which XLA fuses into one vectorised loop; (P, 3)
# arrays with reductions over the size-3 minor axis split it into many strided loops (~10x
# slower on CPU).
Vec = tuple[jax.Array, jax.Array, jax.Array]


def _dot(a: Vec, b: Vec) -> jax.Array:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _scale(a: Vec, s: jax.Array) -> Vec:
    return (a[0] * s, a[1] * s, a[2] * s)


def _add(a: Vec, b: Vec) -> Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _where(c: jax.Array, a: Vec, b) -> Vec:
    b = b if isinstance(b, tuple) else (b, b, b)
    return (jnp.where(c, a[0], b[0]), jnp.where(c, a[1], b[1]), jnp.where(c, a[2], b[2]))


def pair_forces(
    model: ContactModel,
    dt: float,
    dele: jax.Array,
    vr: jax.Array,
    omega_i: jax.Array,
    omega_j: jax.Array,
    rad_i: jax.Array,
    rad_j: jax.Array,
    meff: jax.Array,
    shear: jax.Array,
    roll: jax.Array,
    valid: jax.Array,
    update_history: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """`pair_forces_xyz` on arrays whose last axis (size 3) holds the vector components."""
    split = lambda a: tuple(jnp.moveaxis(a, -1, 0))  # noqa: E731
    out = pair_forces_xyz(
        model,
        dt,
        split(dele),
        split(vr),
        split(omega_i),
        split(omega_j),
        rad_i,
        rad_j,
        meff,
        split(shear),
        split(roll),
        valid,
        update_history,
    )
    return (*(jnp.stack(v, axis=-1) for v in out[:5]), out[5])


def pair_forces_xyz(
    model: ContactModel,
    dt: float,
    dele: Vec,
    vr: Vec,
    omega_i: Vec,
    omega_j: Vec,
    rad_i: jax.Array,
    rad_j: jax.Array,
    meff: jax.Array,
    shear: Vec,
    roll: Vec,
    valid: jax.Array,
    update_history: bool = True,
) -> tuple[Vec, Vec, Vec, Vec, Vec, jax.Array]:
    """Force on i from j and the torques on i and j for a batch of pairs (any shape).

    Args:
        model: contact parameters.
        dt: time step (for the history increments).
        dele: x_i - x_j (minimum image), a 3-tuple of (...) arrays, as every vector here.
        vr: v_i - v_j.
        omega_i, omega_j: angular velocities.
        rad_i, rad_j, meff: radii and effective mass (...).
        shear: tangential spring history xi.
        roll: rolling torque history.
        valid: slot holds a real neighbour (...).
        update_history: False reproduces LAMMPS' setup call (no history increment).

    Returns:
        (force_i, torque_i, torque_j, new_shear, new_roll, fn): the force on j is -force_i and
        fn is the signed normal force.
    """
    rsq = _dot(dele, dele)
    radsum = rad_i + rad_j
    touch = valid & (rsq < radsum * radsum)
    rsq_s = jnp.where(touch, rsq, 1.0)
    r = jnp.sqrt(rsq_s)
    rinv = 1.0 / r
    overlap = jnp.where(touch, radsum - r, 0.0)
    reff = rad_i * rad_j / radsum
    nvec = _scale(dele, rinv)

    vnnr = _dot(vr, dele)
    vn = _scale(dele, vnnr / rsq_s)
    vt = _sub(vr, vn)
    wr = _scale(_add(_scale(omega_i, rad_i), _scale(omega_j, rad_j)), rinv)
    vtr = _sub(vt, _cross(wr, dele))

    if model.normal == "hooke":
        fn = model.kn * overlap - meff * model.gamman * vnnr * rinv
        tscale = None
        kn_eff = model.kn
    else:
        poly = jnp.sqrt(overlap * reff)
        eta = model.gamman * jnp.sqrt(meff * model.kn * jnp.sqrt(reff))
        fn = model.kn * poly * overlap - eta * overlap**0.25 * vnnr * rinv
        tscale = poly
        kn_eff = 1.5 * model.kn * poly  # dF/d delta, the local normal stiffness
    if model.limit_damping:
        fn = jnp.maximum(fn, 0.0)
    fn = jnp.where(touch, fn, 0.0)

    # Cundall-Strack spring: accumulate, then project onto the current tangent plane (LAMMPS).
    if update_history:
        shear = _add(shear, _scale(vtr, dt))
    shrmag = jnp.sqrt(_dot(shear, shear))
    rsht = _dot(shear, dele) / rsq_s
    if update_history:
        shear = _sub(shear, _scale(dele, rsht))
    damp_t = _scale(vtr, meff * model.gammat)
    fs = _scale(_add(_scale(shear, model.kt), damp_t), -1.0)
    if tscale is not None:
        fs = _scale(fs, tscale)
    fsmag = jnp.sqrt(_dot(fs, fs))
    fcap = model.mu * jnp.abs(fn)
    slip = fsmag > fcap
    ratio = jnp.where(slip, fcap / jnp.where(slip, fsmag, 1.0), 1.0)
    kt_s = jnp.where(model.kt > 0, model.kt, 1.0)
    damp_kt = _scale(damp_t, 1.0 / kt_s)
    shear_slip = _sub(_scale(_add(shear, damp_kt), ratio), damp_kt)
    shear = _where(slip & (shrmag != 0.0), shear_slip, shear)
    fs = _where(slip & (shrmag == 0.0), (0.0, 0.0, 0.0), _scale(fs, ratio))
    shear = _where(touch, shear, 0.0)
    fs = _where(touch, fs, 0.0)

    force = _add(_scale(nvec, fn), fs)
    tor = _cross(dele, fs)  # j sees -dele and -fs: the same cross product
    torque = _scale(tor, -rad_i * rinv)
    torque_j = _scale(tor, -rad_j * rinv)

    if model.rolling:
        # EPSD2 rolling resistance on the relative rolling velocity (Ai et al. 2011, eq. 13-16).
        wrel = _sub(omega_i, omega_j)
        wrel_t = _sub(wrel, _scale(nvec, _dot(wrel, nvec)))
        kr = 2.25 * kn_eff * model.mu_roll**2 * reff**2
        if update_history:
            roll = _sub(roll, _scale(wrel_t, kr * dt))
            roll = _sub(roll, _scale(nvec, _dot(roll, nvec)))
        rmag = jnp.sqrt(_dot(roll, roll))
        rcap = model.mu_roll * reff * jnp.abs(fn)
        rscale = jnp.where(rmag > rcap, rcap / jnp.where(rmag > rcap, rmag, 1.0), 1.0)
        roll = _where(touch, _scale(roll, rscale), 0.0)
        torque = _add(torque, roll)
        torque_j = _sub(torque_j, roll)
    else:
        zero = jnp.zeros_like(rsq)
        roll = (zero, zero, zero)
    return force, torque, torque_j, shear, roll, fn

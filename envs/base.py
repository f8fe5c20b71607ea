"""The environment interface: a Gymnasium MuJoCo v5 task as pure, jit- and vmap-able functions.

Every task loads the MJCF file that ships inside the installed gymnasium package, so the model is
exactly the one Gymnasium v5 simulates. A task subclass only says what v5 says: its XML, frame
skip, reset noise, observation, reward and termination. Stepping, action scaling and the time
limit live here, once.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct
from mujoco import mjx

import gymnasium

PHYSICS = ("v5", "fast")
GYMNASIUM_ASSETS = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")


@struct.dataclass
class State:
    """One environment's state (add a leading [N] axis to every leaf under vmap).

    data: the full MJX physics state. obs: [obs_size] float32. reward: [] float32.
    terminated: [] bool, the task's own end (a fall): do not bootstrap.
    truncated: [] bool, the time limit was reached: bootstrap from obs.
    steps: [] int32, env steps taken in this episode.
    info: per-step scalars (reward terms, positions) for logging.
    """

    data: mjx.Data
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    steps: jax.Array
    info: dict[str, jax.Array]


def _plane_capsule_frames_as_mujoco() -> None:
    """Makes MJX's plane-capsule contact frame the one MuJoCo C (gymnasium) builds.

    Both align the first tangent with the capsule axis projected onto the plane, but MJX
    (collision_primitive.plane_capsule, mujoco-mjx 3.17) drops the axis for a fixed y/z direction
    whenever the projection is shorter than 0.5, i.e. for any capsule within 30 degrees of the
    plane normal, while MuJoCo (mjc_PlaneCapsule + mju_makeFrame) always uses it. With pyramidal
    friction cones (every v5 task) the rotated pyramid is a different friction model: one Ant-v5
    step from states with a steep leg on the floor differed by up to 11% in qvel (even in float64).
    The registry of collision functions is read when a step is traced, so patching it at import
    covers every env. Only frames of non-degenerate projections change.
    """
    from mujoco.mjx._src import collision_driver, collision_primitive
    from mujoco.mjx._src import math as mjx_math
    from mujoco.mjx._src.types import GeomType

    @collision_primitive.collider(ncon=2)
    def plane_capsule(plane, cap):
        n, axis = plane.mat[:, 2], cap.mat[:, 2]
        b, b_norm = mjx_math.normalize_with_norm(axis - n * jnp.dot(n, axis))
        b = jnp.where(b_norm < 1e-6, mjx_math.orthogonals(n)[0], b)
        frame = jnp.array([[n, b, jnp.cross(n, b)]])
        segment = axis * cap.size[1]
        contacts = []
        for offset in (segment, -segment):
            dist, pos = collision_primitive._plane_sphere(n, plane.pos, cap.pos + offset, cap.size[0])
            contacts.append((dist[None], pos[None], frame))
        return jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *contacts)

    collision_driver._COLLISION_FUNC[(GeomType.PLANE, GeomType.CAPSULE)] = plane_capsule


_plane_capsule_frames_as_mujoco()


def _dexpinv(theta: jax.Array, omega: jax.Array) -> jax.Array:
    """Inverse of the exponential map's right-trivialized derivative on SO(3), applied to omega:
    omega + theta x omega / 2 + c(|theta|) theta x (theta x omega),
    c(t) = (1 - (t / 2) cot(t / 2)) / t^2 (its Taylor series for small t: float32-safe)."""
    t2 = jnp.sum(theta * theta, axis=-1, keepdims=True)
    t = jnp.sqrt(jnp.maximum(t2, 1e-12))
    exact = (1.0 - 0.5 * t / jnp.tan(jnp.clip(0.5 * t, 1e-6, None))) / jnp.maximum(t2, 1e-12)
    c = jnp.where(t < 0.5, 1.0 / 12.0 + t2 / 720.0 + t2 * t2 / 30240.0, exact)
    cross = jnp.cross(theta, omega)
    return omega + 0.5 * cross + c * jnp.cross(theta, cross)


def mjx_step(m: mjx.Model, d: mjx.Data, rk4_stage_unroll: int = 3) -> mjx.Data:
    """mjx.step, except that RK4 integrates quaternion joints the way MuJoCo C 4.0 does.

    MuJoCo 4.0's mj_RungeKutta is Runge-Kutta-Munthe-Kaas for free/ball joints: the stage
    orientations are q0 * exp(h a_i k_(i-1)) and the stage rates k_i = dexpinv(h a_i k_(i-1),
    omega_i) (omega_i the stage's angular velocity), the step q0 * exp(h sum_j b_j k_j). MJX 3.17
    sums the raw omega_i (classic RK4). Reproduced bit for bit in float64 against mj_step on
    Ant-v5 states; the classic sum was off by up to 7e-6 in the quaternion per 0.01 s physics
    step, which shifted contact onsets and gave one-step Ant-v5 qvel errors up to 1.1e-2 (in float64
    too). Models without free/ball joints, or not on RK4, take mjx.step unchanged.

    `rk4_stage_unroll`: how many of the three later RK4 stages XLA gets as straight-line code
    (3: MJX's choice). Each copy holds a whole mjx.forward: with 1, XLA compiles Humanoid's env
    rollout in 0.55-0.72x the time and runs it at 0.84-0.87x the speed on CPU
    (`benchmarks/env_throughput.py --rk4-unroll 3 1`, docs/BENCHMARKS.md); the result is the same
    up to float32 rounding.
    """
    from mujoco.mjx._src import forward as mjx_forward
    from mujoco.mjx._src import scan
    from mujoco.mjx._src.types import IntegratorType, JointType

    jnt_type, dofadr = np.asarray(m.jnt_type), np.asarray(m.jnt_dofadr)
    rot = [adr + (3 if typ == JointType.FREE else 0)
           for typ, adr in zip(jnt_type, dofadr) if typ in (JointType.FREE, JointType.BALL)]
    if m.opt.integrator != IntegratorType.RK4 or not rot:
        return mjx.step(m, d)
    rot = np.asarray(rot)[:, None] + np.arange(3)  # [n_quat_joints, 3] dof indices
    h = m.opt.timestep
    A, B = mjx_forward._RK4_A, mjx_forward._RK4_B

    d = mjx.forward(m, d)
    d0 = d
    T = d.time + jnp.tril(A).sum(axis=0) * h
    integrate = lambda *args: mjx_forward._integrate_pos(*args, dt=h)

    def stage(carry, x):
        k, vel_sum, acc_sum, act_dot_sum, d = carry  # k: previous stage's (corrected) rate
        a, b, t = x
        dq = a * k
        qpos = scan.flat(m, integrate, 'jqv', 'q', m.jnt_type, d0.qpos, dq)
        qvel = d0.qvel + a * d.qacc * h
        act = d0.act + a * d.act_dot * h
        d = mjx.forward(m, d.replace(qpos=qpos, qvel=qvel, act=act, time=t))
        k = qvel.at[rot].set(_dexpinv(h * dq[rot], qvel[rot]))
        carry = (k, vel_sum + b * k, acc_sum + b * d.qacc, act_dot_sum + b * d.act_dot, d)
        return carry, None

    init = (d.qvel, B[0] * d.qvel, B[0] * d.qacc, B[0] * d.act_dot, d)
    abt = jnp.vstack([jnp.diag(A), B[1:4], T]).T
    (_, vel, acc, act_dot, d1), _ = jax.lax.scan(stage, init, abt, unroll=rk4_stage_unroll)
    d = d1.replace(qpos=d0.qpos, qvel=d0.qvel, act=d0.act, time=d0.time)
    return mjx_forward._advance(m, d, act_dot, acc, vel)


def gymnasium_model(xml_file: str) -> mujoco.MjModel:
    """Loads one of the MJCF files that ship with gymnasium (not a copy of it)."""
    return mujoco.MjModel.from_xml_path(os.path.join(GYMNASIUM_ASSETS, xml_file))


def apply_options(model: mujoco.MjModel, options: dict[str, Any]) -> None:
    """Sets MjOption fields in place, e.g. {"integrator": mujoco.mjtIntegrator.mjINT_EULER,
    "iterations": 4, "ls_iterations": 8}. Enum values may be given as their names ("mjINT_EULER")."""
    enums = {"integrator": mujoco.mjtIntegrator, "solver": mujoco.mjtSolver, "cone": mujoco.mjtCone}
    for field, value in options.items():
        if not hasattr(model.opt, field):
            raise ValueError(f"MjOption has no field {field!r}")
        if isinstance(value, str) and field in enums:
            value = getattr(enums[field], value)
        setattr(model.opt, field, value)


class MujocoEnv:
    """Base of the nine v5 ports. Subclasses set the class attributes and implement
    `_observation` and `_reward_and_termination`, and `_reset_qpos_qvel` where a task's reset
    noise is not the common uniform one.

    Agent actions live in [-1, 1]^action_size; they map linearly onto the actuators' ctrlrange.
    """

    xml_file: str
    frame_skip: int
    max_episode_steps: int = 1000
    # gymnasium calls mj_rnePostConstraint after every step; only cfrc_ext/cacc/cfrc_int change,
    # so tasks whose observation holds none of them skip its cost.
    needs_rne_postconstraint: bool = False
    # physics="fast": MjOption fields to overwrite (e.g. {"iterations": 4, "ls_iterations": 8}),
    # chosen per task by measurement (docs in each task module). Empty: "fast" is the same as "v5".
    fast_physics: dict[str, Any] = {}
    # RK4 stages XLA unrolls for free/ball-joint models (`mjx_step`): fewer compile faster and run
    # slower. Not part of "v5"/"fast" until measured on a GPU.
    rk4_stage_unroll: int = 3
    # Whether the reset observation needs MuJoCo's whole forward pass (collision and constraint
    # solver): only for a task that observes constraint forces. Otherwise reset runs the smooth
    # kinematics alone (`_reset_pass`).
    reset_needs_constraints: bool = False
    # v5's qvel reset noise: uniform like qpos (most tasks) or normal (see _reset_qpos_qvel).
    reset_qvel_normal: bool = False

    def __init__(self, physics: str = "v5", **overrides: Any):
        if physics not in PHYSICS:
            raise ValueError(f"physics must be one of {PHYSICS}, got {physics!r}")
        for name, value in overrides.items():
            if not hasattr(self, name) or name.startswith("_"):
                raise TypeError(f"{type(self).__name__} has no setting {name!r}")
            setattr(self, name, value)
        self.physics = physics
        self.mj_model = gymnasium_model(self.xml_file)
        self._configure_physics(self.mj_model, physics)
        self.mjx_model = mjx.put_model(self.mj_model)
        # gymnasium's MujocoEnv.dt: the time one env step advances.
        self.dt = float(self.mj_model.opt.timestep) * self.frame_skip
        self.init_qpos = jnp.asarray(self.mj_model.qpos0, jnp.float32)
        self.init_qvel = jnp.zeros(self.mj_model.nv, jnp.float32)
        ctrl_range = np.asarray(self.mj_model.actuator_ctrlrange, np.float32)
        self._ctrl_low, self._ctrl_high = jnp.asarray(ctrl_range[:, 0]), jnp.asarray(ctrl_range[:, 1])
        self.action_size = int(self.mj_model.nu)
        self.observation_size = int(
            jax.eval_shape(self._observation, mjx.make_data(self.mjx_model)).shape[0]
        )

    # --- what a task defines -------------------------------------------------------------
    def _configure_physics(self, model: mujoco.MjModel, physics: str) -> None:
        """Edits solver settings in place. "v5" keeps the XML's; "fast" applies `fast_physics`.

        A task whose v5 model MJX cannot run as is (e.g. humanoid's PGS solver) overrides this and
        calls super() after its substitution.
        """
        if physics == "fast":
            apply_options(model, self.fast_physics)

    def _reset_qpos_qvel(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Initial qpos plus uniform noise in [-reset_noise_scale, reset_noise_scale]; initial qvel
        plus the same uniform noise, or reset_noise_scale * N(0, 1) where `reset_qvel_normal`
        (Ant, HalfCheetah, InvertedDoublePendulum), as v5 draws them. Tasks that draw otherwise
        (goals) override it."""
        kq, kv = jax.random.split(key)
        s = self.reset_noise_scale
        qpos = self.init_qpos + jax.random.uniform(kq, self.init_qpos.shape, minval=-s, maxval=s)
        if self.reset_qvel_normal:
            qvel = self.init_qvel + s * jax.random.normal(kv, self.init_qvel.shape)
        else:
            qvel = self.init_qvel + jax.random.uniform(kv, self.init_qvel.shape, minval=-s, maxval=s)
        return qpos, qvel

    def _observation(self, data: mjx.Data) -> jax.Array:
        raise NotImplementedError

    def _reward_and_termination(
        self, before: mjx.Data, after: mjx.Data, ctrl: jax.Array
    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """-> (reward [], terminated [] bool, info). `ctrl` is in actuator units."""
        raise NotImplementedError

    # --- the public interface --------------------------------------------------------------
    def reset(self, key: jax.Array) -> State:
        """A fresh random initial state with v5's reset noise."""
        qpos, qvel = self._reset_qpos_qvel(key)
        return self.reset_to(qpos, qvel)

    def reset_to(self, qpos: jax.Array, qvel: jax.Array) -> State:
        """Starts an episode from a given physics state (like gymnasium's set_state)."""
        data = mjx.make_data(self.mjx_model)
        data = data.replace(qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32))
        data = self._reset_pass(data)
        # MJX's kinematics normalize free/ball-joint quaternions in qpos in place; MuJoCo's mj_forward
        # (gymnasium's set_state) leaves qpos as given (only integration normalizes), so the reset
        # observation keeps the given qpos (Ant's reset noise gives |quat| in about 0.9..1.11).
        # The first step's forward normalizes it again, as MuJoCo's kinematics do.
        data = data.replace(qpos=jnp.asarray(qpos, jnp.float32))
        zero = jnp.zeros((), jnp.float32)
        _, _, info = jax.eval_shape(self._reward_and_termination, data, data, self._ctrl_low)
        return State(
            data=data,
            obs=self._observation(data),
            reward=zero,
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            steps=jnp.zeros((), jnp.int32),
            info={k: jnp.zeros(v.shape, v.dtype) for k, v in info.items()},
        )

    def _reset_pass(self, data: mjx.Data) -> mjx.Data:
        """What reset computes from qpos, qvel: positions, body frames, com inertia (cinert) and
        com velocities (cvel), everything the tasks' reset observations and the reward's "before"
        read, but not contacts or the constraint solve (a task with `reset_needs_constraints` gets
        the whole mjx.forward). Every step starts with its own full forward pass, so the rest of
        the data is never read. Why: the reset is a second copy of the physics in every compiled
        program (VecEnv's auto-reset, evaluation), and at GPU sizes some env resets at almost
        every step. Humanoid's VecEnv rollout traces in 0.71-0.98x the time on CPU; compile and
        speed changed within noise there (benchmarks/reset_pass.py, docs/BENCHMARKS.md)."""
        if self.reset_needs_constraints:
            return mjx.forward(self.mjx_model, data)
        data = mjx.kinematics(self.mjx_model, data)
        data = mjx.com_pos(self.mjx_model, data)
        return mjx.com_vel(self.mjx_model, data)

    def step(self, state: State, action: jax.Array) -> State:
        """Applies `action` ([action_size], in [-1, 1]) for frame_skip physics steps."""
        if jnp.shape(action) != (self.action_size,):
            raise ValueError(
                f"{type(self).__name__}.step expects an action of shape ({self.action_size},), "
                f"got {jnp.shape(action)}; use envs.VecEnv for batches"
            )
        ctrl = self.scale_action(action)
        data = state.data.replace(ctrl=ctrl)
        physics_step = lambda _, d: mjx_step(self.mjx_model, d, self.rk4_stage_unroll)
        data = jax.lax.fori_loop(0, self.frame_skip, physics_step, data)
        if self.needs_rne_postconstraint:
            data = mjx.rne_postconstraint(self.mjx_model, data)
        reward, terminated, info = self._reward_and_termination(state.data, data, ctrl)
        steps = state.steps + 1
        return State(
            data=data,
            obs=self._observation(data),
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=steps >= self.max_episode_steps,
            steps=steps,
            info=info,
        )

    def scale_action(self, action: jax.Array) -> jax.Array:
        """[-1, 1] -> ctrlrange, linearly; out-of-range actions are clipped as MuJoCo would."""
        action = jnp.clip(action, -1.0, 1.0)
        return self._ctrl_low + (action + 1.0) * 0.5 * (self._ctrl_high - self._ctrl_low)

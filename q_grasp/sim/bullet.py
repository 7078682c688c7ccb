"""The pybullet backend: one object that owns its BulletClient, the table and the random stream.

Every pybullet call in q_grasp goes through ``BulletSim.client``; there is no global connection,
so several simulations can live in one process (vectorised envs, tests side by side).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from q_grasp.sim.quiet import bullet_client, c_stdout_silenced, pybullet


@dataclass
class BulletSimConfig:
    """Physics settings of the simulator (the defaults are the ones the grasp baselines use)."""

    time_step_s: float = 1.0 / 240.0
    """Physics time step (s). Smaller is more stable and slower."""
    num_solver_iterations: int = 100
    """Constraint solver iterations per step; fingers squeezing objects need more than the 50
    that pybullet uses by default to keep contacts from sinking in."""
    gravity_m_s2: float = 9.81
    """Gravity magnitude, pointing down (world -z)."""
    table_half_extent_m: float = 0.5
    """Half size (m) of the square table top centred on the world origin (top face at z=0)."""
    table_lateral_friction: float = 0.6
    """Friction coefficient of the table top."""
    table_rgba: tuple[float, float, float, float] = (0.82, 0.82, 0.80, 1.0)
    """Colour of the table, light grey so that coloured objects stand out in RGB images."""

    def __post_init__(self) -> None:
        if not 0.0 < self.time_step_s <= 0.05:
            raise ValueError(f"time_step_s: must be in (0, 0.05] s, got {self.time_step_s}")
        if self.num_solver_iterations < 1:
            raise ValueError(
                f"num_solver_iterations: must be >= 1, got {self.num_solver_iterations}"
            )
        if self.table_half_extent_m <= 0.0:
            raise ValueError(
                f"table_half_extent_m: must be > 0 m, got {self.table_half_extent_m}"
            )


class _Client(bullet_client.BulletClient):
    """A BulletClient that binds each pybullet function to its connection once.

    BulletClient looks every call up again (``getattr`` on the module, ``inspect.isbuiltin``,
    a new ``functools.partial``): ~2 us of a ~0.6 us call, thousands of times per simulated
    second in a control loop. The bound function is kept on the instance instead, where the
    next lookup finds it without ``__getattr__``. (``disconnect`` is not kept: BulletClient
    marks the connection closed when it is looked up.)
    """

    def __getattr__(self, name: str):
        attribute = super().__getattr__(name)
        if name != "disconnect" and callable(attribute):
            self.__dict__[name] = attribute
        return attribute


class BulletSim:
    """A pybullet world with a table whose top face is the plane z=0.

    Physics is deterministic for a given sequence of calls: pybullet is deterministic in DIRECT
    mode, overlapping pairs are sorted (``deterministicOverlappingPairs``) and all randomness
    comes from ``self.rng``, seeded here. ``reset`` empties the world; robots and scenes
    reload their bodies afterwards (``SimRobot.load``, ``Scene.spawn``).
    """

    def __init__(
        self,
        gui: bool = False,
        seed: int | None = 0,
        time_step_s: float | None = None,
        config: BulletSimConfig | None = None,
    ) -> None:
        self.config = config if config is not None else BulletSimConfig()
        if time_step_s is not None:
            self.config = BulletSimConfig(**{**self.config.__dict__, "time_step_s": time_step_s})
        self.gui = bool(gui)
        mode = pybullet.GUI if self.gui else pybullet.DIRECT
        with c_stdout_silenced():  # pybullet prints 'argv[0]=' on connecting
            self.client = _Client(connection_mode=mode)
        self.rng = np.random.default_rng(seed)
        self.table_id = -1
        self.step_count = 0
        """Time steps since the last reset, stepped or passed at rest (simulated time =
        step_count * time_step)."""
        self._setup_world()

    @property
    def time_step_s(self) -> float:
        """Physics time step (s)."""
        return self.config.time_step_s

    @property
    def sim_time_s(self) -> float:
        """Simulated time since the last reset (s)."""
        return self.step_count * self.config.time_step_s

    def _setup_world(self) -> None:
        c = self.client
        cfg = self.config
        c.resetSimulation()
        c.setPhysicsEngineParameter(
            fixedTimeStep=cfg.time_step_s,
            numSolverIterations=cfg.num_solver_iterations,
            deterministicOverlappingPairs=1,
        )
        c.setGravity(0.0, 0.0, -cfg.gravity_m_s2)
        if self.gui:
            c.configureDebugVisualizer(pybullet.COV_ENABLE_GUI, 0)
        # A thin box rather than pybullet_data's plane: one flat colour in the camera image and
        # no dependency on pybullet_data's files.
        half = [cfg.table_half_extent_m, cfg.table_half_extent_m, 0.01]
        col = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half)
        vis = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=half, rgbaColor=cfg.table_rgba)
        self.table_id = c.createMultiBody(
            baseMass=0.0,
            baseCollisionShapeIndex=col,
            baseVisualShapeIndex=vis,
            basePosition=[0.0, 0.0, -0.01],
            useMaximalCoordinates=True,
        )
        c.changeDynamics(self.table_id, -1, lateralFriction=cfg.table_lateral_friction)
        self.step_count = 0

    def step(self, n: int = 1) -> None:
        """Advance physics by ``n`` time steps."""
        step = self.client.stepSimulation
        for _ in range(int(n)):
            step()
        self.step_count += int(n)

    def pass_time(self, n: int = 1) -> None:
        """Let ``n`` time steps of simulated time pass without stepping physics: for a world
        that is at rest with constant motor targets, where a physics step changes nothing."""
        self.step_count += int(n)

    def reset(self, seed: int | None = None) -> None:
        """Empty the world (keeping the table) and, when ``seed`` is given, re-seed ``rng``."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._setup_world()

    def close(self) -> None:
        """Disconnect from pybullet; the object is unusable afterwards."""
        if getattr(self, "client", None) is not None:
            try:
                self.client.disconnect()
            except pybullet.error:
                pass
            self.client = None

    def __enter__(self) -> BulletSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

"""The gymnasium contract of the drawer_tidy env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import pi0bench  # noqa: F401  (registers the ids)
from pi0bench.envs.task_env import TaskEnv
from pi0bench.errors import UserError


def test_registered_and_passes_check_env():
    env = gym.make("pi0bench/DrawerTidy-v0", image_size=32)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_observation_matches_the_design_contract():
    env = TaskEnv("drawer_tidy", image_size=(48, 64))
    obs, info = env.reset(seed=0)
    assert set(obs) == {"images", "state", "prompt"}
    assert set(obs["images"]) == {"base", "wrist"}
    for image in obs["images"].values():
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert image.std() > 5  # a real picture, not a blank buffer
    assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    assert obs["prompt"] == "put the items in the drawer and close it"
    assert env.action_space.shape == (8,)
    assert env.substeps == 25 and env.max_steps == 800  # 20 Hz control, 2 ms physics, 40 s
    assert env.observation_space.contains(obs)
    env.close()


def test_only_requested_cameras_are_rendered():
    env = TaskEnv("drawer_tidy", cameras=("wrist",), image_size=32)
    obs, _ = env.reset(seed=0)
    assert list(obs["images"]) == ["wrist"]
    env.close()


def test_unknown_camera_is_a_one_line_user_error():
    with pytest.raises(UserError, match="unknown camera 'top'.*choose from base, wrist"):
        TaskEnv("drawer_tidy", cameras=("top",))


def test_same_seed_same_initial_state_and_trajectory():
    a, b = TaskEnv("drawer_tidy", cameras=()), TaskEnv("drawer_tidy", cameras=())
    a.reset(seed=11)
    b.reset(seed=11)
    assert np.array_equal(a.data.qpos, b.data.qpos)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(a.action_space.low, a.action_space.high)
        a.step(action)
        b.step(action)
    assert np.array_equal(a.data.qpos, b.data.qpos)
    a.reset(seed=12)
    assert not np.array_equal(a.data.qpos, b.data.qpos)


def test_hold_pose_is_tracked_under_gravity():
    """Gravity compensation + joint-position actuators: the arm holds its pose."""
    env = TaskEnv("drawer_tidy", cameras=())
    obs, _ = env.reset(seed=0)
    start = obs["state"].copy()
    for _ in range(40):
        obs, *_ = env.step(start)
    assert np.abs(obs["state"][:7] - start[:7]).max() < 0.01


# -- a simulation that diverges ------------------------------------------------------------
# MuJoCo meets a NaN/Inf/huge state by resetting the whole simulation and carrying on; the env
# must say so (and end the episode) rather than let the rest be scored on a reset scene.
# Checked to fail with TaskEnv.diverged forced False: the flag and the error record vanish.


def test_a_diverging_simulation_is_reported_and_ends_the_episode():
    env = TaskEnv("drawer_tidy", cameras=())
    env.reset(seed=0)
    hold = env.hold_action()
    _, terminated, truncated, info = env.advance(hold)
    assert not info["sim_diverged"] and not terminated and not truncated
    env.data.qvel[-1] = 5.0  # a fast but finite object: a near miss, physics copes with it
    _, _, truncated, info = env.advance(hold)
    assert not info["sim_diverged"] and not truncated
    env.data.qvel[:] = 1e30
    _, terminated, truncated, info = env.advance(hold)
    assert info["sim_diverged"] and truncated and not terminated
    _, info = env.reset(seed=0)
    assert not info["sim_diverged"]  # a new episode starts clean
    env.close()


def test_an_episode_whose_simulation_diverges_is_an_error_record():
    from pi0bench.rollout import run_episode

    env = TaskEnv("drawer_tidy", cameras=())

    class Blowup:
        """Holds the pose, and on its third call sends an arm joint's velocity to 1e30."""
        execute_steps = 1

        def reset(self, task, seed):
            self.calls = 0

        def act(self, obs):
            self.calls += 1
            if self.calls == 3:
                env.data.qvel[0] = 1e30
            return env.hold_action()[None]

    record = run_episode(env, Blowup(), task="drawer_tidy", policy_name="blowup", seed=0, episode=0)
    assert record.error.startswith("SimulationDiverged: the simulation went unstable at control step 3")
    assert not record.success and record.score == 0.0 and record.steps == 3
    fine = run_episode(env, type("Hold", (), {"execute_steps": 1, "reset": lambda s, t, e: None,
                                              "act": lambda s, o: env.hold_action()[None]})(),
                       task="drawer_tidy", policy_name="hold", seed=0, episode=0)
    assert fine.error == "" and fine.steps == env.max_steps
    env.close()

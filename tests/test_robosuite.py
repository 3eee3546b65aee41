"""robosuite's standard tasks through the project's loop: each MuJoCo compatibility adaptation
(needed, and giving MuJoCo's own answer), reset/step/render of every task, success read from
robosuite, determinism, workers, and one-line errors. Skipped only where robosuite is not
installed (make venv installs it)."""

import json
import multiprocessing
import subprocess
import sys
from importlib import metadata

import mujoco
import numpy as np
import pandas as pd
import pytest

from conftest import check_run_contract
from pi0bench.errors import UserError
from pi0bench.realtime import Realtime
from pi0bench.registry import check_task, make_env, make_policy
from pi0bench.rollout import episode_seed, run_episode
from pi0bench.tasks import robosuite_tasks

MISSING = robosuite_tasks.unavailable()
needs_robosuite = pytest.mark.skipif(MISSING is not None, reason=f"robosuite is not installed ({MISSING})")
SIZE = 32  # camera pixels: small, the tests check content and layout, not looks
OUTCOME = ("task", "policy", "seed", "episode", "episode_seed", "success", "score", "points",
           "stages", "steps", "sim_seconds", "error")


@pytest.fixture(scope="module")
def lift():
    env = make_env("robosuite/Lift", image_size=SIZE)
    yield env
    env.close()


def _dense_inertia(model, data) -> np.ndarray:
    """MuJoCo's own full inertia matrix (the 3.17 API)."""
    dense = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, dense)
    return dense


# -- the compatibility adaptations ------------------------------------------------------------
@needs_robosuite
def test_joint_addresses_need_the_joint_type_adaptation(lift, monkeypatch):
    from pi0bench.envs.robosuite_compat import ADAPTATIONS

    model, raw = lift.suite.sim.model, lift.model
    assert model.get_joint_qpos_addr("robot0_joint2") == raw.joint("robot0_joint2").qposadr[0]
    cube = raw.joint(lift.suite.cube.joints[0])  # a free joint: 7 qpos, 6 dofs
    assert model.get_joint_qpos_addr(cube.name) == (cube.qposadr[0], cube.qposadr[0] + 7)
    assert model.get_joint_qvel_addr(cube.name) == (cube.dofadr[0], cube.dofadr[0] + 6)

    fix = ADAPTATIONS["joint_type"]
    monkeypatch.setattr(fix.owner, fix.attribute, fix.original)
    with pytest.raises(AssertionError):  # robosuite's own check, with MuJoCo 3.17's joint types
        model.get_joint_qpos_addr("robot0_joint2")


@needs_robosuite
def test_packed_inertia_is_mujocos_inertia_in_the_old_layout(lift, monkeypatch):
    from pi0bench.envs.robosuite_compat import ADAPTATIONS

    lift.reset(seed=0)
    model, data = lift.model, lift.data
    dense = _dense_inertia(model, data)
    packed = lift.suite.sim.data.qM
    assert packed.shape == (model.nM,)
    # The old layout: dof i's row starts at dof_Madr[i] with M[i, i], then M[i, j] for each
    # ancestor j of i, nearest first.
    for i in range(model.nv):
        address, j = model.dof_Madr[i], i
        while j >= 0:
            assert packed[address] == pytest.approx(dense[i, j], rel=1e-12, abs=1e-12)
            address, j = address + 1, model.dof_parentid[j]

    fix = ADAPTATIONS["qM"]
    monkeypatch.delattr(fix.owner, fix.attribute)
    arm = lift.suite.robots[0].composite_controller.part_controllers["right"]
    with pytest.raises(AttributeError, match="qM"):  # robosuite's controller reads data.qM
        arm.update(force=True)


@needs_robosuite
def test_controller_mass_matrix_needs_the_mj_fullM_adaptation(lift, monkeypatch):
    from pi0bench.envs.robosuite_compat import ADAPTATIONS

    lift.reset(seed=1)
    arm = lift.suite.robots[0].composite_controller.part_controllers["right"]
    arm.update(force=True)
    dense = _dense_inertia(lift.model, lift.data)
    np.testing.assert_allclose(arm.mass_matrix, dense[np.ix_(arm.qvel_index, arm.qvel_index)], rtol=1e-12)
    full = np.empty_like(dense)
    ADAPTATIONS["mj_fullM"].replacement.mj_fullM(lift.model, full, lift.suite.sim.data.qM)
    np.testing.assert_allclose(full, dense, rtol=1e-12, atol=1e-15)

    fix = ADAPTATIONS["mj_fullM"]
    monkeypatch.setattr(fix.owner, fix.attribute, fix.original)
    with pytest.raises(TypeError):  # MuJoCo 3.17's mj_fullM(m, d, dst) refuses the old arguments
        arm.update(force=True)


@needs_robosuite
def test_robosuite_is_adapted_only_when_imported_through_the_project():
    code = ("import pi0bench.registry, mujoco, robosuite; from robosuite.utils import binding_utils as b; "
            "from robosuite.controllers.parts import controller as c; "
            "print(b.MjModel.jnt_type.fget.__module__, hasattr(b.MjData, 'qM'), c.mujoco is mujoco)")
    bare = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert bare.stdout.split() == ["robosuite.utils.binding_utils", "False", "True"], bare.stderr[-2000:]


# -- the adapter -------------------------------------------------------------------------------
@needs_robosuite
@pytest.mark.parametrize("task", list(robosuite_tasks.TASKS))
def test_every_task_resets_steps_and_renders(task):
    env = make_env(task, image_size=SIZE)
    try:
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert list(obs["images"]) == list(env.robot.default_cameras)
        assert "agentview" in obs["images"] and "robot0_eye_in_hand" in obs["images"]
        assert all(image.shape == (SIZE, SIZE, 3) and image.std() > 5 for image in obs["images"].values())
        assert obs["prompt"] == env.task.instruction and not info["is_success"]
        assert obs["state"].shape == (sum(n for _, n in env.metadata["state"]),)

        parts = env.metadata["action"]  # the controller's action layout, declared
        assert [p["start"] for p in parts[1:]] == [p["stop"] for p in parts[:-1]]
        assert parts[0]["start"] == 0 and parts[-1]["stop"] == env.action_space.shape[0]
        assert [p["controller"] for p in parts] == ["OSC_POSE", "GRIP"] * len(env.task.robots)
        assert env.max_steps == env.suite.horizon and env.robot.control_hz == env.suite.control_freq

        action = np.random.default_rng(0).uniform(env.action_space.low, env.action_space.high)
        after, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(after)
        assert reward == 0.0 and not terminated and not truncated and not info["is_success"]
        assert env.sim_seconds == pytest.approx(1.0 / env.robot.control_hz)
        assert not np.array_equal(after["state"], obs["state"])
    finally:
        env.close()


@needs_robosuite
def test_lift_passes_gymnasiums_env_checker(lift):
    from gymnasium.utils.env_checker import check_env

    check_env(lift, skip_render_check=True)


@needs_robosuite
def test_images_are_robosuites_own_camera_images_upright(lift):
    """The adapter renders with the project's CPU renderer; robosuite's own offscreen renderer
    gives the same pixels, upside down (its default OpenGL image convention)."""
    from pi0bench.envs.robosuite_compat import import_robosuite

    ours = lift.reset(seed=2)[0]["images"]
    suite = import_robosuite().make("Lift", robots="Panda", has_renderer=False, has_offscreen_renderer=True,
                                    use_camera_obs=True, camera_names=list(lift.cameras), camera_heights=SIZE,
                                    camera_widths=SIZE, use_object_obs=False, hard_reset=False, seed=0)
    try:
        suite.reset()  # hides robosuite's visualisation sites, as the adapter's reset does
        suite.sim.data.qpos[:] = lift.data.qpos
        suite.sim.forward()
        theirs = suite._get_observations(force_update=True)
        for camera in lift.cameras:
            np.testing.assert_array_equal(theirs[f"{camera}_image"][::-1], ours[camera])
    finally:
        suite.close()


class _Arranged:
    """A privileged policy that puts the scene into a state robosuite scores as a success,
    then keeps the robot still."""

    execute_steps = None
    metadata = {"name": "arranged", "version": "0", "checkpoint": ""}

    def __init__(self, env, arrange):
        self.env, self.arrange = env, arrange

    def reset(self, task, seed):
        pass

    def act(self, obs):
        self.arrange(self.env.suite)
        self.env.suite.sim.forward()
        return self.env.robot.still_action[None]


def _raise(joint: str, height: float):
    def arrange(suite):
        qpos = suite.sim.data.get_joint_qpos(joint).copy()
        qpos[2] += height
        suite.sim.data.set_joint_qpos(joint, qpos)
    return arrange


def _stack(suite):
    on_top = suite.sim.data.get_joint_qpos(suite.cubeB.joints[0]).copy()
    on_top[2] += 0.041  # two 2 cm half-sizes, and a millimetre to fall
    suite.sim.data.set_joint_qpos(suite.cubeA.joints[0], on_top)


def _open_door(suite):
    suite.sim.data.qpos[suite.hinge_qpos_addr] = 0.36  # robosuite: open beyond 0.3 rad (its range ends at 0.4)


def _can_in_its_bin(suite):
    index = suite.object_to_id[suite.obj_to_use.lower()]
    joint = suite.objects[index].joints[0]
    qpos = suite.sim.data.get_joint_qpos(joint).copy()
    qpos[:2] = suite.target_bin_placements[index][:2]
    qpos[2] = suite.bin2_pos[2] + 0.05
    suite.sim.data.set_joint_qpos(joint, qpos)


def _nut_on_its_peg(suite):
    joint = suite.nuts[0].joints[0]  # the square nut; its peg is peg 1
    qpos = suite.sim.data.get_joint_qpos(joint).copy()
    qpos[:2] = suite.sim.data.body_xpos[suite.peg1_body_id][:2]
    qpos[2] = suite.table_offset[2] + 0.02
    qpos[3:] = (1.0, 0.0, 0.0, 0.0)
    suite.sim.data.set_joint_qpos(joint, qpos)


SUCCESS_STATES = {
    "robosuite/Lift": lambda suite: _raise(suite.cube.joints[0], 0.15)(suite),
    "robosuite/Stack": _stack,
    "robosuite/Door": _open_door,
    "robosuite/PickPlaceCan": _can_in_its_bin,
    "robosuite/NutAssemblySquare": _nut_on_its_peg,
    "robosuite/TwoArmLift": lambda suite: _raise(suite.pot.joints[0], 0.2)(suite),
}


@needs_robosuite
@pytest.mark.parametrize("task", list(SUCCESS_STATES))
def test_a_state_robosuite_scores_as_success_earns_the_point(task):
    env = make_env(task, cameras=())
    try:
        record = run_episode(env, _Arranged(env, SUCCESS_STATES[task]), task=task, policy_name="arranged",
                             seed=0, episode=0)
    finally:
        env.close()
    assert record.error == ""
    assert record.success and record.score == 1.0 and record.steps == 1  # terminated on success
    assert json.loads(record.stages) == {"success": 1.0}


@needs_robosuite
def test_hold_keeps_the_robot_still_and_earns_nothing(lift):
    obs, _ = lift.reset(seed=3)
    hold = make_policy("hold", lift)
    hold.reset("robosuite/Lift", 3)
    start = lift.suite.sim.data.site_xpos[lift.suite.robots[0].eef_site_id["right"]].copy()
    for action in hold.act(obs):
        _, reward, terminated, _, _ = lift.step(action)
        assert reward == 0.0 and not terminated
    moved = lift.suite.sim.data.site_xpos[lift.suite.robots[0].eef_site_id["right"]] - start
    assert np.linalg.norm(moved) < 0.005


# -- determinism and workers ---------------------------------------------------------------------
def _trajectory(env, seed: int, steps: int = 30) -> np.ndarray:
    """Initial and final physics state of `steps` seeded random actions from a seeded reset."""
    obs, _ = env.reset(seed=seed)
    start = env.data.qpos.copy()
    policy = make_policy("random", env)
    policy.reset(env.task.name, seed)
    while env.steps < steps:
        for action in policy.act(obs):
            env.advance(action)
    return np.concatenate([start, env.data.qpos, env.data.qvel])


def _fresh_trajectory(task: str, seed: int) -> np.ndarray:
    env = make_env(task, cameras=())
    try:
        return _trajectory(env, seed)
    finally:
        env.close()


@needs_robosuite
def test_same_seed_same_episode_in_any_env_and_process(lift):
    task = "robosuite/Lift"
    seed = episode_seed(task, 0, 1)
    _trajectory(lift, episode_seed(task, 0, 0))  # another episode first: nothing carries over
    reused = _trajectory(lift, seed)
    np.testing.assert_array_equal(reused, _trajectory(lift, seed))
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # how workers start
        np.testing.assert_array_equal(reused, pool.apply(_fresh_trajectory, (task, seed)))
    other = _trajectory(lift, seed + 1)
    assert not np.array_equal(reused[: lift.model.nq], other[: lift.model.nq])  # placements differ


@needs_robosuite
def test_random_on_lift_scores_zero_and_runs_identically_on_two_workers(tmp_path):
    """Full episodes (robosuite's 1000-step horizon) through eval's run store and report."""
    from pi0bench.evaluate import EvalConfig, evaluate
    from pi0bench.store import RunStore

    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        (cell,) = evaluate(EvalConfig(policy="random", task="robosuite/Lift", episodes=2, seed=0,
                                      workers=workers, out=out, cameras=()))["cells"]
        assert cell["successes"] == 0 and cell["mean_score"] == 0.0 and cell["errors"] == 0
        check_run_contract(out)
        runs[workers] = RunStore(out).load()
    assert runs[1][list(OUTCOME)].equals(runs[2][list(OUTCOME)])
    assert (runs[1].steps == 1000).all() and np.allclose(runs[1].sim_seconds, 50.0)


# -- errors ------------------------------------------------------------------------------------
@needs_robosuite
@pytest.mark.parametrize("policy,needle", [
    ("scripted", "robosuite/Lift has no scripted expert"),
    ("pi0", "not on the robosuite-Panda robot of this task"),
    ("act", "no act checkpoint"),
    ("dp", "no dp checkpoint"),
])
def test_policies_that_cannot_drive_robosuite_say_so_in_one_line(lift, policy, needle):
    with pytest.raises(UserError, match=needle) as raised:
        make_policy(policy, lift)
    assert "\n" not in str(raised.value)


def test_missing_robosuite_is_explained_in_one_line(monkeypatch, capsys):
    from pi0bench import cli

    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(robosuite_tasks.metadata, "version", absent)
    reason = robosuite_tasks.unavailable()
    assert "pip install 'pi0bench[robosuite]'" in reason and "robosuite==1.5.2" in reason
    with pytest.raises(UserError, match="pip install"):
        check_task("robosuite/Lift")
    cli.tasks()
    listed = capsys.readouterr().out.strip().splitlines()
    assert listed[-1] == reason  # one line, printed as it is, after the project's tasks


def test_unknown_robosuite_task_lists_the_family():
    with pytest.raises(UserError, match="robosuite tasks: robosuite/Lift, robosuite/Stack"):
        check_task("robosuite/Nope")


@needs_robosuite
def test_cli_lists_robosuite_tasks_with_their_controllers():
    result = subprocess.run([sys.executable, "-m", "pi0bench.cli", "tasks"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in robosuite_tasks.TASKS:
        assert name.removeprefix("robosuite/")[:12] in result.stdout
    assert "OSC_POSE[0:6] GRIP[6:7]" in result.stdout


@needs_robosuite
def test_remote_policy_on_a_robosuite_task_replays_the_local_run(tmp_path):
    """`pi0bench serve` builds robosuite envs too, and `remote:` drives robosuite/Lift exactly
    like the local policy (50-D proprioceptive state, 7-D OSC actions over the wire)."""
    from pi0bench.evaluate import EvalConfig, evaluate
    from serving import policy_server

    same = ["episode_seed", "success", "score", "steps", "sim_seconds", "error"]
    local = EvalConfig(policy="random", task="robosuite/Lift", episodes=1, cameras=(), out=tmp_path / "local")
    evaluate(local)
    with policy_server(policy="random", task="robosuite/Lift", cameras=()) as (url, _):
        evaluate(EvalConfig(policy=f"remote:{url}", task="robosuite/Lift", episodes=1, cameras=(),
                            out=tmp_path / "remote"))
    a, b = (pd.read_parquet(tmp_path / name / "episodes") for name in ("local", "remote"))
    pd.testing.assert_frame_equal(a[same], b[same])


@needs_robosuite
def test_realtime_mode_on_a_robosuite_task_holds_still_while_waiting(tmp_path):
    from pi0bench.evaluate import EvalConfig, evaluate

    evaluate(EvalConfig(policy="random", task="robosuite/Lift", episodes=1, cameras=(),
                        realtime=Realtime(latency_ms=100.0), out=tmp_path / "rt"))
    late = pd.read_parquet(tmp_path / "rt" / "episodes")
    assert late["error"].iloc[0] == "" and late["delay_steps"].iloc[0] > 0


@needs_robosuite
def test_compare_marks_scripted_not_applicable_on_robosuite_and_runs_the_rest(tmp_path):
    import json

    from pi0bench.compare import CompareConfig, compare

    compare(CompareConfig(policies=("scripted", "random"), tasks=("robosuite/Lift",), out=tmp_path / "cmp",
                          episodes=1, image_size=32))
    na = json.loads((tmp_path / "cmp" / "not_applicable.json").read_text())
    assert [(c["policy"], c["task"]) for c in na] == [("scripted", "robosuite/Lift")]
    assert "no scripted expert" in na[0]["reason"]
    assert len(list((tmp_path / "cmp" / "cells").glob("random-robosuite_Lift/episodes/*.parquet"))) == 1

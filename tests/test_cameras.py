"""Every camera renders from where it says it is: a named camera is never MuJoCo's free
camera, wrist cameras ride on their arm, fixed cameras stay put, and an unknown name fails
when the env is built."""

import mujoco
import numpy as np
import pytest

from pi0bench.envs.render import CameraRenderer
from pi0bench.envs.task_env import TaskEnv
from pi0bench.errors import UserError

TASKS = ("drawer_tidy", "towel_fold", "paper_towel_replace")
SIZE = 48


def robot_hidden() -> mujoco.MjvOption:
    """Render without the robots' geoms (group 1), so an image changes only when the camera
    itself moves or the world in front of it does."""
    option = mujoco.MjvOption()
    option.geomgroup[1] = 0
    return option


def wrist_cameras(env) -> list[str]:
    return [c for c in env.robot.cameras if "wrist" in c]


def play(env, arm_turn: float, steps: int = 30) -> None:
    """From seed 0, turn every arm's first joint (base yaw) by `arm_turn` rad and let the
    servos get there (0: hold the home pose for as long)."""
    env.reset(seed=0)
    target = env.robot.home.copy()
    for sl in env.robot.arm_slices:
        target[sl.start] += arm_turn
    for _ in range(steps):
        env.advance(target)


@pytest.fixture(params=TASKS)
def env(request):
    env = TaskEnv(request.param, cameras=())
    env.reset(seed=0)
    yield env
    env.close()


def test_every_camera_differs_from_the_free_camera(env):
    renderer = CameraRenderer(env.model, SIZE, SIZE)
    free = renderer._renderer
    free.update_scene(env.data, camera=-1)
    free_image = free.render().copy()
    for name, image in renderer.render(env.data, env.robot.cameras).items():
        assert np.abs(image.astype(int) - free_image).mean() > 10, name
    renderer.close()


def test_wrist_cameras_move_with_their_arm_and_fixed_cameras_do_not(env):
    """The same seconds played twice, once with the arms turned: with the robots hidden, a
    wrist camera's image changes and a fixed camera's is the same picture."""
    renderer = CameraRenderer(env.model, SIZE, SIZE, robot_hidden())
    play(env, 0.0)
    held = renderer.render(env.data, env.robot.cameras)
    positions = {c: env.data.cam_xpos[env.model.camera(c).id].copy() for c in env.robot.cameras}
    play(env, 0.4)
    turned = renderer.render(env.data, env.robot.cameras)
    wrists = wrist_cameras(env)
    assert wrists, "every robot has a wrist camera"
    for name in env.robot.cameras:
        moved = np.linalg.norm(env.data.cam_xpos[env.model.camera(name).id] - positions[name])
        change = np.abs(turned[name].astype(int) - held[name]).mean()
        if name in wrists:
            assert moved > 0.02 and change > 2, (name, moved, change)
        else:
            assert moved == 0 and change < 0.05, (name, moved, change)
    renderer.close()


def test_unknown_camera_fails_when_the_renderer_is_asked_for_it():
    env = TaskEnv("drawer_tidy", cameras=())
    renderer = CameraRenderer(env.model, SIZE, SIZE)
    with pytest.raises(UserError, match="no camera 'panda/cam'.*base, wrist"):
        renderer.render(env.data, ("panda/cam",))
    renderer.close()
    env.close()


def test_a_robot_camera_missing_from_the_model_fails_when_the_env_is_built(monkeypatch):
    """What made drawer_tidy's wrist view the free camera: the attached robot's camera
    compiled as `panda/wrist` while the robot declared `wrist`."""
    from pi0bench.tasks import drawer_tidy

    def unrenamed(self):
        spec = mujoco.MjSpec.from_string(drawer_tidy.scene_mjcf())
        spec.attach(drawer_tidy.franka.franka_spec(), frame=spec.frame("robot_mount"),
                    prefix=drawer_tidy.PANDA.prefix)
        return spec

    monkeypatch.setattr(drawer_tidy.DrawerTidy, "build_spec", unrenamed)
    with pytest.raises(UserError, match="no camera 'wrist'; its cameras are base, panda/wrist"):
        TaskEnv("drawer_tidy", cameras=())


def test_gym_make_wrist_image_is_not_the_free_camera():
    """As a new user would try it (the report that found the bug): the wrist image that
    `gymnasium.make` returns is not MuJoCo's free camera, and not the base camera."""
    import gymnasium

    import pi0bench  # noqa: F401  (registers the ids)

    env = gymnasium.make("pi0bench/DrawerTidy-v0", cameras=("base", "wrist"), image_size=SIZE)
    obs, _ = env.reset(seed=0)
    free = mujoco.Renderer(env.unwrapped.model, SIZE, SIZE)
    free.update_scene(env.unwrapped.data, camera=-1)
    free_image = free.render().astype(int)
    free.close()
    env.close()
    wrist = obs["images"]["wrist"].astype(int)
    assert np.abs(wrist - free_image).mean() > 10
    assert np.abs(wrist - obs["images"]["base"]).mean() > 10


def test_an_env_left_open_exits_quietly():
    """gymnasium.make, reset and leave without close(), as many gymnasium users do, next to an
    env closed by hand and one used as a context manager: the interpreter exits without a
    word on stderr (it used to print EGL tracebacks from the renderer's finaliser)."""
    import subprocess
    import sys

    script = (
        "import gymnasium as gym\n"
        "import pi0bench.envs\n"
        "left = gym.make('pi0bench/DrawerTidy-v0', cameras=('base',), image_size=32)\n"
        "left.reset(seed=0)\n"
        "closed = gym.make('pi0bench/TowelFold-v0', cameras=('cam_high',), image_size=32)\n"
        "closed.reset(seed=0)\n"
        "closed.close()\n"
        "closed.close()\n"
        "with gym.make('pi0bench/PaperTowelReplace-v0', cameras=('cam_high',), image_size=32) as env:\n"
        "    env.reset(seed=0)\n"
        "print('done')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "done"
    assert result.stderr == "", result.stderr[-2000:]

"""Demonstrations: the LeRobot v3.0 writer/reader round trip, and `pi0bench demos` recording
clean expert actions and keeping only successes."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pi0bench.lerobot_dataset import DemoDataset, LeRobotWriter

CAMERAS = ("top", "wrist")


def synthetic_episode(length: int, offset: float, size: int = 32):
    """Smooth images (video codecs keep them nearly exact) and distinct state/action values."""
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    frames = {c: [np.clip(ramp[None, :, None] + 3 * t + 20 * k + np.zeros((size, size, 3)), 0, 255)
                  .astype(np.uint8) for t in range(length)] for k, c in enumerate(CAMERAS)}
    states = [np.full(3, offset + t, np.float32) for t in range(length)]
    actions = [np.full(3, offset + t + 0.5, np.float32) for t in range(length)]
    return frames, states, actions


@pytest.fixture
def dataset_dir(tmp_path):
    writer = LeRobotWriter(tmp_path / "ds", fps=20.0, robot_type="test", cameras=CAMERAS,
                           image_size=32, state_names=["a", "b", "c"], action_names=["a", "b", "c"])
    writer.add_episode(*synthetic_episode(12, 0.0), task="open the drawer")
    writer.add_episode(*synthetic_episode(7, 100.0), task="fold the towel")
    writer.close()
    return tmp_path / "ds"


def test_layout_and_metadata_follow_lerobot_v3(dataset_dir):
    for path in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet",
                 "meta/episodes/chunk-000/file-000.parquet", "data/chunk-000/file-000.parquet",
                 "videos/observation.images.top/chunk-000/file-000.mp4",
                 "videos/observation.images.wrist/chunk-000/file-000.mp4"):
        assert (dataset_dir / path).is_file(), path
    info = json.loads((dataset_dir / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20.0
    assert info["total_episodes"] == 2 and info["total_frames"] == 19 and info["total_tasks"] == 2
    assert info["features"]["observation.images.top"]["shape"] == [32, 32, 3]
    assert info["features"]["action"]["names"] == ["a", "b", "c"]
    tasks = pd.read_parquet(dataset_dir / "meta/tasks.parquet")
    assert sorted(tasks.index) == ["fold the towel", "open the drawer"]
    episodes = pd.read_parquet(dataset_dir / "meta/episodes/chunk-000/file-000.parquet")
    assert episodes["length"].tolist() == [12, 7]
    assert episodes["dataset_to_index"].tolist() == [12, 19]
    stats = json.loads((dataset_dir / "meta/stats.json").read_text())
    assert stats["action"]["min"] == [0.5] * 3 and stats["action"]["max"] == [106.5] * 3
    assert np.asarray(stats["observation.images.top"]["mean"]).shape == (3, 1, 1)


def test_round_trip_gives_back_states_actions_and_frames(dataset_dir):
    data = DemoDataset(dataset_dir, chunk=5)
    assert len(data) == 19
    first = data[0]
    assert first["prompt"] == "open the drawer"
    np.testing.assert_array_equal(first["state"].numpy(), [0, 0, 0])
    np.testing.assert_array_equal(first["action"][:, 0].numpy(), [0.5, 1.5, 2.5, 3.5, 4.5])
    expected = synthetic_episode(12, 0.0)[0]
    for camera in CAMERAS:
        image = data[3]["images"][camera].numpy()
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert np.abs(image.astype(int) - expected[camera][3].astype(int)).mean() < 3.0  # lossy video
    second = data[12]
    assert second["prompt"] == "fold the towel"
    np.testing.assert_array_equal(second["state"].numpy(), [100, 100, 100])


def test_action_chunks_stop_at_the_episode_end(dataset_dir):
    data = DemoDataset(dataset_dir, chunk=5)
    last = data[10]  # two frames before the end of episode 0
    np.testing.assert_array_equal(last["action"][:, 0].numpy(), [10.5, 11.5, 11.5, 11.5, 11.5])
    np.testing.assert_array_equal(last["action_is_pad"].numpy(), [False, False, True, True, True])


def _decoded_files(root):
    return sorted(p.relative_to(root).as_posix() for p in (root / "decoded").rglob("*.npy"))


def test_videos_are_decoded_once_into_a_shared_memory_map(dataset_dir, monkeypatch):
    import os

    import pi0bench.lerobot_dataset as lerobot_dataset

    first = DemoDataset(dataset_dir, chunk=5)
    assert len(_decoded_files(dataset_dir)) == len(CAMERAS)
    assert all(isinstance(first.images[c], np.memmap) for c in CAMERAS)
    assert not list((dataset_dir / "decoded").rglob("*.partial"))

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(lerobot_dataset, "_decode", no_decoding)
    second = DemoDataset(dataset_dir, chunk=5)
    for camera in CAMERAS:
        np.testing.assert_array_equal(second.images[camera], first.images[camera])
    item = second[3]["images"]["top"]
    assert item.numpy().flags.writeable  # a copy, not a view of the read-only map
    monkeypatch.undo()

    video = dataset_dir / "videos/observation.images.top/chunk-000/file-000.mp4"
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as a re-recording would
    before = _decoded_files(dataset_dir)
    third = DemoDataset(dataset_dir, chunk=5)
    after = _decoded_files(dataset_dir)
    assert len(after) == len(CAMERAS) and set(after) != set(before)  # top's stale copy replaced
    np.testing.assert_array_equal(third.images["top"], first.images["top"])


def test_a_read_only_dataset_is_decoded_into_memory(dataset_dir, monkeypatch):
    from pathlib import Path

    cached = DemoDataset(dataset_dir, chunk=5).images
    original_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if "decoded" in self.parts:
            raise PermissionError(13, "Read-only file system", str(self))
        return original_mkdir(self, *args, **kwargs)

    import shutil

    shutil.rmtree(dataset_dir / "decoded")
    monkeypatch.setattr(Path, "mkdir", read_only)
    data = DemoDataset(dataset_dir, chunk=5)
    assert not (dataset_dir / "decoded").exists()
    for camera in CAMERAS:
        assert not isinstance(data.images[camera], np.memmap)
        np.testing.assert_array_equal(data.images[camera], cached[camera])


@pytest.mark.parametrize("rows, found", [(20, "19"), (18, "more than 18")])
def test_a_video_and_data_of_different_lengths_is_one_clear_error(dataset_dir, rows, found):
    from pi0bench.errors import UserError

    data_file = dataset_dir / "data/chunk-000/file-000.parquet"
    frames = pd.read_parquet(data_file)
    frames = pd.concat([frames, frames.iloc[-1:]]) if rows > len(frames) else frames.iloc[:rows]
    frames.to_parquet(data_file)
    with pytest.raises(UserError, match=f"has {found} frames but the data has {rows}; the dataset is damaged"):
        DemoDataset(dataset_dir, chunk=5)
    assert not [p for p in (dataset_dir / "decoded").rglob("*") if p.is_file() and p.name != ".lock"]


def test_reading_something_that_is_not_a_dataset_is_one_clear_error(tmp_path):
    from pi0bench.errors import UserError

    with pytest.raises(UserError, match="meta/info.json is missing"):
        DemoDataset(tmp_path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pi0bench.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_demos_record_the_clean_expert_actions(tmp_path):
    """With no noise the recorded actions are exactly what the expert commands on its own."""
    from pi0bench.envs.task_env import TaskEnv
    from pi0bench.registry import make_policy
    from pi0bench.rollout import episode_seed

    result = _cli("demos", "--task", "drawer_tidy", "--episodes", "1", "--noise", "0",
                  "--image-size", "32", "--out", str(tmp_path / "ds"))
    assert result.returncode == 0, result.stderr
    assert "yield: 1 of 1" in result.stderr
    data = DemoDataset(tmp_path / "ds", chunk=1)
    assert data.cameras == ["base", "wrist"] and data.info["robot_type"] == "franka"

    env = TaskEnv("drawer_tidy", cameras=())
    seed = episode_seed("drawer_tidy", 1, 0)
    obs, _ = env.reset(seed=seed)
    expert = make_policy("scripted", env)
    expert.reset("drawer_tidy", seed)
    for t in range(len(data)):
        np.testing.assert_allclose(data.states[t], obs["state"], atol=1e-6)
        action = expert.act(obs)[0]
        np.testing.assert_array_equal(data.actions[t], action)
        obs, _, _, _, _ = env.step(action)
    env.close()


def test_demos_keep_only_successes(tmp_path):
    result = _cli("demos", "--task", "drawer_tidy", "--episodes", "1", "--noise", "0.6",
                  "--image-size", "16", "--out", str(tmp_path / "ds"))
    assert result.returncode == 2
    assert "yield: 0 of 1" in result.stderr
    assert "nothing was written" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "ds" / "meta" / "info.json").exists()


def _demos_args(out, episodes: int, workers: int) -> list[str]:
    return ["demos", "--task", "drawer_tidy", "--episodes", str(episodes), "--noise", "0.01",
            "--image-size", "16", "--workers", str(workers), "--out", str(out)]


def _dataset_content(root) -> tuple:
    data = DemoDataset(root, chunk=1)
    return data.states, data.actions, data.episode_index, {c: data.images[c] for c in data.cameras}


def _assert_same_dataset(a, b) -> None:
    states_a, actions_a, index_a, images_a = _dataset_content(a)
    states_b, actions_b, index_b, images_b = _dataset_content(b)
    np.testing.assert_array_equal(states_a, states_b)
    np.testing.assert_array_equal(actions_a, actions_b)
    np.testing.assert_array_equal(index_a, index_b)
    for camera in images_a:
        np.testing.assert_array_equal(images_a[camera], images_b[camera])


def test_demos_resume_after_kill_9_and_match_any_worker_count(tmp_path):
    """The same dataset from 2 workers uninterrupted, and from 1 worker killed with SIGKILL
    after its first finished attempt and then rerun with the same command: the rerun keeps
    what was finished (it plays only the rest) and the result is identical."""
    import signal
    import time

    episodes = 3
    reference = _cli(*_demos_args(tmp_path / "two", episodes, workers=2))
    assert reference.returncode == 0, reference.stderr
    assert f"of {episodes} demonstrations succeeded" in reference.stderr

    out = tmp_path / "one"
    staging = tmp_path / "one.partial"
    first = subprocess.Popen([sys.executable, "-m", "pi0bench.cli", *_demos_args(out, episodes, workers=1)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(staging.glob("00000*.kept.npz")) + list(staging.glob("00000*.dropped")):
        assert time.time() < deadline and first.poll() is None, "no attempt finished before the kill"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = len(list(staging.glob("00000*.*")))
    assert not out.exists() and 1 <= finished < episodes

    resumed = _cli(*_demos_args(out, episodes, workers=1))
    assert resumed.returncode == 0, resumed.stderr
    said = " ".join(resumed.stderr.split())  # rich wraps long lines
    assert f"{finished} attempts already finished, {episodes - finished} to play" in said
    assert not staging.exists()
    _assert_same_dataset(out, tmp_path / "two")


def test_demos_refuse_to_resume_a_different_recording(tmp_path):
    (tmp_path / "ds.partial").mkdir()
    (tmp_path / "ds.partial" / "recording.json").write_text(json.dumps(
        {"task": "drawer_tidy", "seed": 1, "image_size": 16, "noise": 0.05, "cameras": None}))
    result = _cli(*_demos_args(tmp_path / "ds", 1, workers=1))
    assert result.returncode == 2
    assert "holds a different recording (noise 0.05 → 0.01)" in " ".join(result.stderr.split())


def test_replay_reproduces_a_recorded_dataset_and_catches_one_that_does_not_match(tmp_path):
    """`pi0bench replay`: the executed commands re-played from each episode's seed give the
    recorded states exactly and succeed; a dataset whose executed actions were altered is
    reported as not matching (exit 1)."""
    recorded = _cli(*_demos_args(tmp_path / "ds", 3, workers=2))  # episode 0 is not a success
    assert recorded.returncode == 0, recorded.stderr
    replayed = _cli("replay", "--data", str(tmp_path / "ds"))
    assert replayed.returncode == 0, replayed.stderr
    said = " ".join(replayed.stdout.split())
    assert "executed commands (action.executed) │ 2 │ 2 (100 %) │ 0" in said

    path = tmp_path / "ds" / "data/chunk-000/file-000.parquet"
    frames = pd.read_parquet(path)
    frames["action.executed"] = [a + np.float32(0.05) for a in frames["action.executed"]]
    frames.to_parquet(path, index=False)
    altered = _cli("replay", "--data", str(tmp_path / "ds"))
    assert altered.returncode == 1
    assert "did not replay exactly" in altered.stderr


def test_replay_refuses_a_dataset_without_seeds(dataset_dir):
    result = _cli("replay", "--data", str(dataset_dir))
    assert result.returncode == 2 and "no recorded seeds" in result.stderr

"""Demonstrations on disk in LeRobot's v3.0 layout, and a torch Dataset that reads them back.

Layout (as LeRobot 0.4 writes it; see REFERENCE.md):
  meta/info.json                      codebase_version "v3.0", robot_type, fps, features, ...
  meta/stats.json                     per feature min/max/mean/std/count and quantiles
  meta/tasks.parquet                  task string as the index, column task_index
  meta/episodes/chunk-000/file-000.parquet   one row per episode
  data/chunk-000/file-000.parquet     one row per frame, episodes back to back
  videos/observation.images.<cam>/chunk-000/file-000.mp4   the frames, episodes back to back

Videos are H.264 (yuv420p) rather than LeRobot's default AV1: the ffmpeg shipped with
imageio-ffmpeg encodes it everywhere, and LeRobot's readers decode it. A dataset here holds
at most 1000 episodes (one chunk, one file per stream), plenty for CPU-sized training.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pandas as pd
import torch

from pi0bench.errors import UserError
from pi0bench.normalize import merge_stats

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def video_file(camera: str) -> str:
    return f"videos/observation.images.{camera}/chunk-000/file-000.mp4"


@dataclass
class Episode:
    """One demonstration: per step a frame of every camera, the state and the action."""

    frames: dict[str, list[np.ndarray]]
    states: list[np.ndarray]
    actions: list[np.ndarray]
    task: str
    executed: list[np.ndarray] | None = None  # what the robot was sent (demos: action + noise)
    seed: int | None = None  # the env's reset seed, so the episode can be replayed


class _PixelStats:
    """Per-channel statistics of every frame of a camera, accumulated episode by episode (a
    dataset's frames do not fit in memory at once); quantiles come from every 8th frame."""

    def __init__(self) -> None:
        self.sum, self.sumsq = np.zeros(3), np.zeros(3)
        self.min, self.max = np.full(3, np.inf), np.full(3, -np.inf)
        self.count, self.sample = 0, []

    def add(self, frames: np.ndarray) -> None:
        pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
        self.sum += pixels.sum(0)
        self.sumsq += (pixels ** 2).sum(0)
        self.min, self.max = np.minimum(self.min, pixels.min(0)), np.maximum(self.max, pixels.max(0))
        self.count += len(pixels)
        self.sample.append(frames[::8].reshape(-1, 3))

    def result(self) -> dict:
        mean = self.sum / self.count
        out = {"min": self.min, "max": self.max, "mean": mean,
               "std": np.sqrt(np.maximum(self.sumsq / self.count - mean ** 2, 0.0)), "count": [self.count]}
        sample = np.concatenate(self.sample).astype(np.float64) / 255.0
        for q in QUANTILES:
            out[f"q{round(q * 100):02d}"] = np.quantile(sample, q, axis=0)
        return {k: (np.asarray(v).reshape(3, 1, 1).tolist() if k != "count" else v) for k, v in out.items()}


@dataclass
class LeRobotWriter:
    """Collects finished episodes and writes the whole dataset on `close()`. Episodes are
    given in memory (`add_episode`) or as loaders (`add_episode_loader`, for datasets whose
    frames do not fit in memory: each is loaded once, while the videos are written)."""

    root: Path
    fps: float
    robot_type: str
    cameras: tuple[str, ...]
    image_size: int
    state_names: list[str]
    action_names: list[str]
    source: dict | None = None  # how the data was made (info.json "pi0bench": task, seed, noise)
    _episodes: list[Callable[[], Episode]] = field(default_factory=list)

    def add_episode(self, frames: dict[str, list[np.ndarray]], states: list[np.ndarray],
                    actions: list[np.ndarray], task: str) -> None:
        episode = Episode(frames, states, actions, task)
        self._check(episode)
        self.add_episode_loader(lambda: episode)

    def add_episode_loader(self, load: Callable[[], Episode]) -> None:
        if len(self._episodes) >= CHUNKS_SIZE:
            raise UserError(f"a dataset holds at most {CHUNKS_SIZE} episodes here; write another one")
        self._episodes.append(load)

    def _check(self, episode: Episode) -> None:
        lengths = {len(episode.states), len(episode.actions), *(len(f) for f in episode.frames.values())}
        if len(lengths) != 1 or set(episode.frames) != set(self.cameras):
            raise ValueError("an episode needs one state, action and frame of every camera per step")

    def close(self) -> None:
        """Write everything into a hidden folder, then rename it: a killed write never leaves
        a dataset that looks complete."""
        if not self._episodes:
            raise UserError("no successful episode to write: nothing was recorded")
        final = Path(self.root)
        root = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(root, ignore_errors=True)
        (root / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        rows, episode_rows, tasks, start = [], [], {}, 0
        pixel_stats = {camera: _PixelStats() for camera in self.cameras}
        with contextlib.ExitStack() as videos:
            writers = {camera: videos.enter_context(self._video_writer(root / video_file(camera)))
                       for camera in self.cameras}
            for index, load in enumerate(self._episodes):
                episode = load()
                self._check(episode)
                task = tasks.setdefault(episode.task, len(tasks))
                n = len(episode.actions)
                for k in range(n):
                    rows.append({
                        "observation.state": np.asarray(episode.states[k], np.float32),
                        "action": np.asarray(episode.actions[k], np.float32),
                        "timestamp": np.float32(k / self.fps),
                        "frame_index": k,
                        "episode_index": index,
                        "index": start + k,
                        "task_index": task,
                        **({"action.executed": np.asarray(episode.executed[k], np.float32)}
                           if episode.executed is not None else {}),
                    })
                for camera in self.cameras:
                    for frame in episode.frames[camera]:
                        writers[camera].append_data(frame)
                    pixel_stats[camera].add(np.stack(episode.frames[camera]))
                episode_rows.append(self._episode_row(index, episode, start))
                start += n
        frames = pd.DataFrame(rows)
        frames.to_parquet(root / DATA_FILE, index=False)
        pd.DataFrame(episode_rows).to_parquet(root / EPISODES_FILE, index=False)
        pd.DataFrame({"task_index": list(tasks.values())},
                     index=pd.Index(list(tasks), name="task")).to_parquet(root / "meta/tasks.parquet")
        stats = {key: _vector_stats(np.stack(frames[key].to_numpy()))
                 for key in ("observation.state", "action")}
        stats.update({f"observation.images.{c}": pixel_stats[c].result() for c in self.cameras})
        (root / "meta/stats.json").write_text(json.dumps(stats, indent=2))
        info = self._info(len(frames), len(tasks), executed="action.executed" in frames.columns)
        (root / "meta/info.json").write_text(json.dumps(info, indent=2))
        if final.exists():
            final.rmdir()  # an empty folder the user made for it; anything else is refused earlier
        root.rename(final)

    def _episode_row(self, index: int, episode: Episode, start: int) -> dict:
        n = len(episode.actions)
        row = {
            "episode_index": index, "tasks": [episode.task], "length": n,
            **({"seed": int(episode.seed)} if episode.seed is not None else {}),
            "data/chunk_index": 0, "data/file_index": 0,
            "dataset_from_index": start, "dataset_to_index": start + n,
            "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
        }
        for camera in self.cameras:
            key = f"videos/observation.images.{camera}"
            row.update({f"{key}/chunk_index": 0, f"{key}/file_index": 0,
                        f"{key}/from_timestamp": start / self.fps,
                        f"{key}/to_timestamp": (start + n) / self.fps})
        return row

    def _video_writer(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        return imageio.get_writer(path, fps=self.fps, codec="libx264", pixelformat="yuv420p",
                                  output_params=["-crf", "12"], macro_block_size=1,
                                  ffmpeg_log_level="error")

    def _info(self, total_frames: int, total_tasks: int, executed: bool = False) -> dict:
        vector = lambda names: {"dtype": "float32", "shape": [len(names)], "names": names}  # noqa: E731
        features = {
            "observation.state": vector(self.state_names),
            "action": vector(self.action_names),
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        }
        if executed:
            features["action.executed"] = vector(self.action_names)
        for camera in self.cameras:
            features[f"observation.images.{camera}"] = {
                "dtype": "video", "shape": [self.image_size, self.image_size, 3],
                "names": ["height", "width", "channels"],
                "info": {"video.height": self.image_size, "video.width": self.image_size,
                         "video.codec": "h264", "video.pix_fmt": "yuv420p",
                         "video.is_depth_map": False, "video.fps": self.fps,
                         "video.channels": 3, "has_audio": False},
            }
        return {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": len(self._episodes), "total_frames": total_frames,
            "total_tasks": total_tasks, "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 500, "fps": self.fps,
            "splits": {"train": f"0:{len(self._episodes)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features,
            **({"pi0bench": self.source} if self.source else {}),
        }


def _vector_stats(values: np.ndarray) -> dict:
    values = values.astype(np.float64)
    out = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0),
           "std": values.std(0), "count": [int(len(values))]}
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(values, q, axis=0)
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


class DemoDataset(torch.utils.data.Dataset):
    """(observation, prompt, action chunk) windows of a v3.0 dataset written by LeRobotWriter.

    Item t of an episode: that frame's images (uint8 HxWx3 per camera) and state, the episode's
    task string, and the next `chunk` actions starting at t; past the episode's end the last
    action repeats and `action_is_pad` marks those rows (as LeRobot's delta timestamps do).
    With `history` > 1 each camera's images are [history, H, W, 3] and the state is
    [history, S]: frames t−history+1 … t, the episode's first frame repeated before its start.
    Each camera's video is decoded once into ROOT/decoded/ and read back as a memory map (see
    `decoded_frames`).
    """

    def __init__(self, root: Path | str, chunk: int = 50, history: int = 1):
        self.root = Path(root)
        self.info, self.stats = read_meta(self.root)
        self.chunk, self.history = chunk, history
        frames = pd.read_parquet(self.root / DATA_FILE)
        self.states = np.stack(frames["observation.state"].to_numpy()).astype(np.float32)
        self.actions = np.stack(frames["action"].to_numpy()).astype(np.float32)
        self.episode_index = frames["episode_index"].to_numpy()
        tasks = pd.read_parquet(self.root / "meta/tasks.parquet")
        task_names = {int(i): str(t) for t, i in zip(tasks.index, tasks["task_index"])}
        self.prompts = [task_names[int(i)] for i in frames["task_index"].to_numpy()]
        episodes = pd.read_parquet(self.root / EPISODES_FILE)
        self.episode_start = dict(zip(episodes["episode_index"], episodes["dataset_from_index"]))
        self.episode_end = dict(zip(episodes["episode_index"], episodes["dataset_to_index"]))
        self.cameras = [k.removeprefix("observation.images.") for k, f in self.info["features"].items()
                        if f["dtype"] == "video"]
        self.images = {c: decoded_frames(self.root, c, len(frames)) for c in self.cameras}

    def __len__(self) -> int:
        return len(self.actions)

    def __getitem__(self, index: int) -> dict:
        episode = int(self.episode_index[index])
        end = self.episode_end[episode]
        rows = np.arange(index, index + self.chunk)
        pad = rows >= end
        rows = np.minimum(rows, end - 1)
        frames = index if self.history == 1 else np.maximum(
            np.arange(index - self.history + 1, index + 1), self.episode_start[episode])
        return {
            "images": {c: torch.from_numpy(np.array(self.images[c][frames])) for c in self.cameras},
            "state": torch.from_numpy(self.states[frames]),
            "prompt": self.prompts[index],
            "action": torch.from_numpy(self.actions[rows]),
            "action_is_pad": torch.from_numpy(pad),
        }


def read_meta(root: Path) -> tuple[dict, dict]:
    """A dataset's info.json and stats.json, after checking it is one this project reads."""
    info_path = Path(root) / "meta/info.json"
    if not info_path.exists():
        raise UserError(f"{root} is not a dataset: meta/info.json is missing "
                        "(record one with `pi0bench demos`)")
    info = json.loads(info_path.read_text())
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise UserError(f"{root}: expected a LeRobot {CODEBASE_VERSION} dataset, "
                        f"found {info.get('codebase_version')!r}")
    return info, json.loads((Path(root) / "meta/stats.json").read_text())


def widest_dims(infos: list[dict]) -> dict[str, int]:
    """{"state_dim", "action_dim"}: the largest over several datasets' info.json, which a
    multi-robot model pads every robot to."""
    return {key: max(info["features"][feature]["shape"][0] for info in infos)
            for key, feature in (("state_dim", "observation.state"), ("action_dim", "action"))}


def robot_normalizers(roots: list[Path]) -> dict[str, dict]:
    """Normaliser dicts per robot type, pooled over every dataset of that robot."""
    by_robot: dict[str, list] = {}
    for root in roots:
        info, stats = read_meta(root)
        by_robot.setdefault(info["robot_type"], []).append(stats)
    return {robot: merge_stats(stats) for robot, stats in by_robot.items()}


DECODED_DIR = "decoded"


def decoded_frames(root: Path, camera: str, expected_frames: int) -> np.ndarray:
    """A camera's frames, uint8 [N, H, W, 3], as a read-only memory map of ROOT/decoded/CAMERA/,
    decoded from the video the first time. Every training on the dataset then shares one copy
    in the page cache instead of each holding its own (a 245k-frame, 3-camera dataset is 9 GB
    decoded), and a resumed run skips the decoding. The file is named by the video's size and
    mtime, so a re-recorded dataset is decoded again; it is written whole, then renamed into
    place. A dataset folder that cannot be written to is decoded into memory instead."""
    video = Path(root) / video_file(camera)
    stat = video.stat()
    folder = Path(root) / DECODED_DIR / camera
    cached = folder / f"{stat.st_size}-{stat.st_mtime_ns}.npy"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".lock", "w")
    except OSError:
        return _decode(video, expected_frames, lambda shape: np.empty(shape, np.uint8))
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one decoder a dataset; the others then read its file
        if not cached.exists():
            for leftover in folder.iterdir():  # older recordings, or a killed decoder's part
                if leftover.name != ".lock":
                    leftover.unlink()
            partial = folder / f"{cached.stem}.partial"
            try:
                frames = _decode(video, expected_frames,
                                 lambda shape: np.lib.format.open_memmap(partial, "w+", np.uint8, shape))
                frames.flush()
                del frames
                os.replace(partial, cached)
            finally:
                partial.unlink(missing_ok=True)
    return np.load(cached, mmap_mode="r")


def _decode(path: Path, expected_frames: int, allocate: Callable[[tuple], np.ndarray]) -> np.ndarray:
    """Decode a video straight into `allocate(shape)`, never holding a second copy."""
    frames, count = None, 0
    with imageio.get_reader(path, format="ffmpeg") as reader:
        for frame in reader:
            if count == expected_frames:
                count += 1
                break
            if frames is None:
                frames = allocate((expected_frames, *frame.shape))
            frames[count] = frame
            count += 1
    if count != expected_frames:
        found = f"{count}" if count <= expected_frames else f"more than {expected_frames}"
        raise UserError(f"{path} has {found} frames but the data has {expected_frames}; "
                        "the dataset is damaged, record it again")
    return frames

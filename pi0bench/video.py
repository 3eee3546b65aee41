"""Episode videos: the frames the policy saw, cameras side by side, as H.264 mp4."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Write to a hidden temp name, then rename: a killed run never leaves half a video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7,
                            macro_block_size=1, ffmpeg_log_level="error") as writer:
        for frame in frames:
            writer.append_data(frame)
    tmp.replace(path)

"""Where a comparison keeps its parts: OUT/compare.json, one eval run per cell under
OUT/cells/POLICY-TASK, OUT/not_applicable.json. Both the runner (compare) and the report
(compare_report) read the layout from here."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pi0bench.errors import UserError
from pi0bench.store import RunStore, cell_dir

CONFIG_FILE = "compare.json"


def load_comparison(out: Path) -> tuple[dict, pd.DataFrame, list[dict]]:
    """(config, every cell's episodes, n/a cells) of a comparison directory."""
    out = Path(out)
    if not (out / CONFIG_FILE).is_file():
        raise UserError(f"{out} is not a comparison directory (no {CONFIG_FILE})")
    config = json.loads((out / CONFIG_FILE).read_text())
    frames = [RunStore(cell_dir(out, p, t)).load() for t in config["tasks"] for p in config["policies"]
              if cell_dir(out, p, t).is_dir()]
    frames = [f[f["episode"] < config["episodes"]] for f in frames if not f.empty]
    episodes = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    na_path = out / "not_applicable.json"
    not_applicable = json.loads(na_path.read_text()) if na_path.is_file() else []
    return config, episodes, not_applicable

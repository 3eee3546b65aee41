"""One training pipeline for every learnable policy.

Each batch draws its windows from the datasets in equal shares (one dataset per task). AdamW with linear warm-up then cosine decay, gradient clipping, an EMA of the weights (what
gets evaluated), z-score normalisation from the datasets' statistics (stored in the
checkpoint, per robot), periodic atomic checkpoints, and resume: rerunning the same command
continues from the last checkpoint with the same batches it would have drawn. Batches are a
pure function of (seed, step), so an interrupted and resumed run trains on exactly what an
uninterrupted one would.

A warm start (`init_from`) begins a new run, with its own schedule, from another run's
evaluation weights and normalisation: how a run whose cosine schedule has ended while its
curve still rises keeps training.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file

from pi0bench import checkpoint
from pi0bench.errors import UserError
from pi0bench.lerobot_dataset import DemoDataset, robot_normalizers
from pi0bench.normalize import Normalizer
from pi0bench.registry import recipe_class


@dataclass
class TrainConfig:
    policy: str
    data: list[Path]
    out: Path
    model: str | None = None  # a named size of the policy (default: the recipe's)
    steps: int = 2000
    batch_size: int = 32
    lr: float | None = None  # peak learning rate (default: the model config's)
    warmup: int = 100
    weight_decay: float = 1e-4
    ema: float = 0.99
    clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    milestones: tuple[float, ...] = (0.25, 0.5, 1.0)  # fractions of `steps` kept as step-N checkpoints
    threads: int = 1  # torch's intra-op threads (explicit: results and speed must not depend on the host)
    init_from: Path | None = None  # warm start: a checkpoint of the same policy and model whose weights begin the run
    model_args: tuple[tuple[str, object], ...] = ()  # (field, value) set in the model config (--model-arg)

    def to_dict(self) -> dict:
        return {k: ([str(p) for p in v] if k == "data" else str(v) if k in ("out", "init_from") and v is not None else v)
                for k, v in asdict(self).items()}


def with_model_args(fields: dict, model_args: tuple[tuple[str, object], ...]) -> dict:
    """A model config's fields with `--model-arg` values set; a name that is not a field is
    an error naming the fields."""
    for name, value in model_args:
        if name not in fields:
            raise UserError(f"--model-arg {name!r} is not a field of the {fields.get('name')} config; "
                            f"choose from: {', '.join(sorted(fields))}")
        if not _same_kind(value, fields[name]):
            raise UserError(f"--model-arg {name}={value!r}: expected {type(fields[name]).__name__}, "
                            f"like its current value {fields[name]!r}")
    return {**fields, **dict(model_args)}


def _same_kind(value: object, current: object) -> bool:
    """Whether a parsed --model-arg value can stand for a field's current value."""
    if current is None:
        return True
    if isinstance(current, float) and not isinstance(value, bool):
        return isinstance(value, (int, float))
    if isinstance(current, (tuple, list)):
        return isinstance(value, list)
    return type(value) is type(current)


def _check_resumed_model_args(fields: dict, model_args: tuple[tuple[str, object], ...]) -> None:
    """A resumed run keeps the config it started with; a --model-arg that contradicts it is an
    error, not a silent change half-way through."""
    for name, value in model_args:
        if fields.get(name) != value:
            raise UserError(f"this run was started with {name}={fields.get(name)!r}, not {value!r}; "
                            "resume it with the --model-arg it was started with")


def lr_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_indices(seed: int, step: int, size: int, lengths: list[int]) -> np.ndarray:
    """Global window indices of one batch: each window's dataset is drawn uniformly (so a task
    with short or few episodes is not drowned out), then a window within it."""
    rng = np.random.default_rng([seed, step])
    which = rng.integers(0, len(lengths), size)
    offsets = np.cumsum([0] + list(lengths))[:-1]
    return offsets[which] + (rng.random(size) * np.asarray(lengths)[which]).astype(np.int64)


class TrainingData:
    """Several datasets as one index space, each window tagged with its robot."""

    def __init__(self, roots: list[Path], chunk: int, history: int = 1):
        if not roots:
            raise UserError("give at least one --data directory")
        self.sets = [DemoDataset(root, chunk=chunk, history=history) for root in roots]
        self.robots = [d.info["robot_type"] for d in self.sets]
        self.offsets = np.cumsum([0] + [len(d) for d in self.sets])
        self.normalizers = robot_normalizers(roots)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict:
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        sample = self.sets[k][int(index - self.offsets[k])]
        sample["robot"] = self.robots[k]
        return sample


def train(config: TrainConfig, console: Console | None = None) -> Path:
    """Train (or resume) and return the directory of the final checkpoint."""
    console = console or Console(stderr=True)
    out = Path(config.out)
    recipe_cls = recipe_class(config.policy)
    state_path = out / "checkpoints" / "last"
    resume = (state_path / "train_state.json").is_file()
    init = _warm_start(config) if config.init_from and not resume else None
    warm_start = init["warm_start"] if init else None
    if resume:
        saved = checkpoint.read_config(state_path)
        recipe = recipe_cls.from_dict(saved["model"])
        warm_start = saved.get("warm_start")
        _check_resumed_model_args(recipe.config_dict(), config.model_args)
    else:
        if init:
            recipe = recipe_cls.from_dict(init["model"])
        else:
            name = config.model or recipe_cls.default_config
            if name not in recipe_cls.configs:
                raise UserError(f"unknown --model {name!r} for {config.policy}; choose from: {', '.join(recipe_cls.configs)}")
            recipe = recipe_cls.from_name(name)
        recipe = recipe_cls.from_dict(with_model_args(recipe.config_dict(), config.model_args))
    data = TrainingData([Path(p) for p in config.data], recipe.chunk, recipe.history)
    if not resume:
        fitted = recipe.for_datasets([d.info for d in data.sets])
        if init and fitted.config_dict() != recipe.config_dict():
            changed = sorted(k for k, v in fitted.config_dict().items() if recipe.config_dict().get(k) != v)
            raise UserError(f"--init-from {config.init_from} does not fit these datasets ({', '.join(changed)} differ); "
                            "warm-start only on data of the same robots, cameras and dimensions")
        recipe = fitted
    # A run's normalisation is fixed when it starts: a warm start keeps the one its weights learned.
    norm_dicts = saved["normalizers"] if resume else init["normalizers"] if init else data.normalizers
    missing = sorted(set(data.robots) - set(norm_dicts))
    if init and missing:
        raise UserError(f"--init-from {config.init_from} was trained on {', '.join(norm_dicts)}, not on {', '.join(missing)}")
    normalizers = {r: Normalizer.from_dict(d) for r, d in norm_dicts.items()}
    if config.lr is None:
        config = replace(config, lr=recipe.default_lr)

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = recipe.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95),
                                  weight_decay=config.weight_decay)
    start = 0
    if init:
        checkpoint.load_weights(model, Path(config.init_from) / "model.safetensors")
        console.print(f"warm start from {config.init_from} (its step {init.get('step')})")
    if resume:
        start = _restore(state_path, model, optimizer)
        _truncate_log(out / "losses.csv", start)
        console.print(f"resuming {out} at step {start}")
    ema = copy.deepcopy(model).eval()
    if resume:
        checkpoint.load_weights(ema, state_path / "model.safetensors")
    for p in ema.parameters():
        p.requires_grad_(False)
    out.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"{config.policy} ({recipe.config.name}, {n_params / 1e6:.1f}M parameters) on "
                  f"{len(data)} windows from {len(data.sets)} dataset(s); steps {start}..{config.steps}")

    keep = milestone_steps(config)

    def save(step: int) -> None:
        meta = {"policy": config.policy, "model": recipe.config_dict(), "normalizers": norm_dicts,
                "step": step, "train": config.to_dict(),
                **({"warm_start": warm_start} if warm_start else {})}
        raw = {f"model.{k}": v for k, v in model.state_dict().items()}
        raw.update(_optimizer_tensors(optimizer))
        checkpoint.save(state_path, meta, ema.state_dict(),
                        train_state=(raw, {"step": step, "optimizer_steps": _optimizer_steps(optimizer)}))
        if step in keep:
            checkpoint.save(milestone_dir(out, step), meta, ema.state_dict())
        _plot_losses(out)

    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("eta"), TimeRemainingColumn())
    model.train()
    with Progress(*columns, console=console) as bar, open(out / "losses.csv", "a", newline="") as log:
        writer = csv.writer(log)
        task = bar.add_task("train", total=config.steps, completed=start, loss="-")
        for step in range(start, config.steps):
            started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config)
            idx = batch_indices(config.seed, step, config.batch_size, [len(d) for d in data.sets])
            batch = recipe.collate([data[int(i)] for i in idx], normalizers)
            torch.manual_seed(config.seed * 1_000_003 + step)
            loss = recipe.loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1.0 - config.ema)
            writer.writerow([step, f"{loss.item():.6f}", f"{time.perf_counter() - started:.4f}"])
            bar.update(task, advance=1, loss=f"{loss.item():.4f}")
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps or step + 1 in keep:
                log.flush()
                save(step + 1)
    return state_path


def _warm_start(config: TrainConfig) -> dict:
    """The config of the checkpoint a warm start begins from, checked to be this policy's and
    model size's, with a sha256 of its weights recorded in the new run's identity."""
    source = Path(config.init_from)
    init = checkpoint.read_config(source)
    if init.get("policy") != config.policy:
        raise UserError(f"--init-from {source} is a {init.get('policy')!r} checkpoint, not a {config.policy!r} one")
    name = init["model"].get("name")
    if config.model is not None and config.model != name:
        raise UserError(f"--init-from {source} is a {name!r} model, not {config.model!r}; drop --model or match it")
    return init | {"warm_start": {"checkpoint": str(source), "step": init.get("step"),
                                  "sha256": checkpoint.weights_sha256(source)}}


def milestone_steps(config: TrainConfig) -> set[int]:
    """The steps whose EMA weights are kept for a learning curve (`pi0bench curve`)."""
    return {max(1, round(f * config.steps)) for f in config.milestones}


def milestone_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def milestones(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, checkpoint directory) of every kept milestone of a training run, in order."""
    found = sorted((int(p.name.removeprefix("step-")), p)
                   for p in (Path(run_dir) / "checkpoints").glob("step-*") if (p / "config.json").is_file())
    if not found:
        raise UserError(f"{run_dir} has no milestone checkpoints (checkpoints/step-N); "
                        "train it with this version's `pi0bench train`")
    return found


def export(run_dir: Path, target: Path, dtype: torch.dtype = torch.float16) -> None:
    """Copy a run's evaluation weights (EMA) and config into a small checkpoint for shipping."""
    source = Path(run_dir) / "checkpoints" / "last"
    config = checkpoint.read_config(source)
    checkpoint.save(target, config, load_file(str(source / "model.safetensors")), dtype=dtype)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, state in optimizer.state_dict()["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            out[f"optim.{i}.{name}"] = state[name]
    return out


def _optimizer_steps(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {str(i): float(s["step"]) for i, s in optimizer.state_dict()["state"].items()}


def _restore(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    tensors = load_file(str(path / "train_state.safetensors"))
    meta = json.loads((path / "train_state.json").read_text())
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    state = optimizer.state_dict()
    state["state"] = {
        int(i): {"step": torch.tensor(steps), "exp_avg": tensors[f"optim.{i}.exp_avg"],
                 "exp_avg_sq": tensors[f"optim.{i}.exp_avg_sq"]}
        for i, steps in meta["optimizer_steps"].items()
    }
    optimizer.load_state_dict(state)
    return int(meta["step"])


def _truncate_log(path: Path, start: int) -> None:
    """Drop loss rows logged after the checkpoint a run resumes from (they are redone)."""
    if path.is_file():
        rows = [r for r in csv.reader(open(path)) if r and int(r[0]) < start]
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)


def _plot_losses(out: Path) -> None:
    from pi0bench.plots import figure, figure_png
    from pi0bench.store import atomic_write_bytes

    rows = list(csv.reader(open(out / "losses.csv")))
    if not rows:
        return
    steps = np.array([int(r[0]) for r in rows])
    losses = np.array([float(r[1]) for r in rows])
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, axes = figure(6.0, 3.5)
    ax = axes[0, 0]
    ax.plot(steps, losses, alpha=0.3, label="loss")
    ax.plot(steps[window - 1:], smooth, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend()
    atomic_write_bytes(out / "loss.png", figure_png(fig))

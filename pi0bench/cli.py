"""The `pi0bench` command line: tasks, policies, eval, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from pi0bench.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Evaluate robot policies on the π0 paper's tasks, re-created in MuJoCo.")
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)


@app.command()
def tasks() -> None:
    """List the tasks: robot, instruction, episode length, rubric."""
    from pi0bench.registry import TASKS, make_task

    table = Table(title="tasks")
    for column in ("task", "robot", "instruction", "seconds", "rubric (points)"):
        table.add_column(column)
    for name in sorted(TASKS):
        task = make_task(name)
        robot = task.make_robot()
        rubric = ", ".join(f"{s.name} ({s.points:g})" for s in task.stages)
        table.add_row(name, f"{robot.name} ({robot.action_dim}-D @ {robot.control_hz:g} Hz)",
                      task.instruction, f"{task.episode_seconds:g}", rubric)
    out.print(table)


@app.command()
def policies() -> None:
    """List the policies that can be evaluated."""
    from pi0bench.registry import POLICIES, describe_policy

    table = Table(title="policies")
    table.add_column("policy")
    table.add_column("what it is")
    for name in sorted(POLICIES):
        table.add_row(name, describe_policy(name))
    out.print(table)


@app.command("eval")
def eval_(
    policy: str = typer.Option(..., help="policy name (see `pi0bench policies`)"),
    task: str = typer.Option(..., help="task name (see `pi0bench tasks`)"),
    episodes: int = typer.Option(10, help="number of episodes"),
    seed: int = typer.Option(0, help="base seed; episode i's initial state depends only on (task, seed, i)"),
    workers: int = typer.Option(1, help="worker processes, each with its own env and policy"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (default results/runs/POLICY-TASK-seedSEED)"),
    videos: int = typer.Option(0, help="write mp4 videos of the first K episodes"),
    execute_steps: Optional[int] = typer.Option(None, help="actions executed per chunk (default: the policy's)"),
    image_size: int = typer.Option(128, help="camera image height and width in pixels"),
    cameras: Optional[str] = typer.Option(
        None, help="comma-separated cameras (default: the robot's policy cameras); 'none' renders "
                   "nothing, for privileged-state policies such as scripted"),
    timeout: float = typer.Option(30.0, help="seconds one policy call may take before its episode is an error"),
    overwrite: bool = typer.Option(False, help="discard the episodes already in the run directory"),
    checkpoint: Optional[str] = typer.Option(None, help="weights for policies that load them (pi0, act, dp)"),
    policy_arg: list[str] = typer.Option([], help="NAME=VALUE option of the policy, repeatable "
                                                  "(act: temporal_ensemble=0.01; dp: inference_steps=16)"),
) -> None:
    """Evaluate one policy on one task; rerunning the same command resumes it."""
    from pi0bench.evaluate import EvalConfig, evaluate
    from pi0bench.report import results_table

    config = EvalConfig(
        policy=policy, task=task, episodes=episodes, seed=seed, workers=workers, out=out_dir,
        videos=videos, execute_steps=execute_steps, image_size=image_size,
        cameras=_camera_list(cameras),
        timeout_s=timeout if timeout > 0 else None, overwrite=overwrite, checkpoint=checkpoint,
        policy_args=_policy_args(policy_arg),
    )
    summary = evaluate(config, console=err)
    out.print(results_table(summary))
    out.print(f"run directory: {config.run_dir}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run directory written by `pi0bench eval`")) -> None:
    """Recompute summary.json, report.md/html and the plot from a run's stored episodes."""
    from pi0bench.report import results_table, write_report
    from pi0bench.store import RunStore

    store = RunStore(run_dir)
    config = store.config()
    episodes = store.load()
    if episodes.empty:
        raise UserError(f"{run_dir} has no finished episodes yet")
    summary = write_report(store.dir, config, episodes)
    out.print(results_table(summary))


@app.command()
def demos(
    task: str = typer.Option(..., help="task to demonstrate"),
    episodes: int = typer.Option(..., help="expert episodes to attempt; only successes are kept"),
    out_dir: Path = typer.Option(..., "--out", help="dataset directory (LeRobot v3.0 layout)"),
    seed: int = typer.Option(1, help="base seed (evaluations default to 0, so their initial states differ)"),
    image_size: int = typer.Option(64, help="camera image height and width in pixels"),
    noise: float = typer.Option(0.01, help="std (rad) of the smooth noise added to executed arm joint targets"),
    cameras: Optional[str] = typer.Option(None, help="comma-separated cameras (default: the robot's policy cameras)"),
) -> None:
    """Record scripted-expert demonstrations as a LeRobot v3.0 dataset."""
    from pi0bench.demos import DemoConfig, record_demos

    config = DemoConfig(task=task, episodes=episodes, out=out_dir, seed=seed, image_size=image_size,
                        noise=noise, cameras=_camera_list(cameras))
    result = record_demos(config, console=err)
    out.print(f"{result['kept']} of {result['attempted']} episodes kept in {result['out']}")


@app.command("train")
def train_(
    policy: str = typer.Option(..., help="trainable policy (pi0, act, dp)"),
    data: list[Path] = typer.Option(..., help="dataset directory from `pi0bench demos`; repeat for several tasks"),
    out_dir: Path = typer.Option(..., "--out", help="run directory; rerunning the same command resumes it"),
    model: Optional[str] = typer.Option(None, help="model size: pi0-small|pi0, act-small|act, dp-small|dp "
                                                   "(default: the small one)"),
    steps: int = typer.Option(2000, help="optimizer steps"),
    batch_size: int = typer.Option(32, help="windows per step"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate, warm-up then cosine decay "
                                                  "(default: the model config's)"),
    seed: int = typer.Option(0, help="seed of the initial weights and of every batch"),
    checkpoint_every: int = typer.Option(200, help="steps between checkpoints"),
) -> None:
    """Train a policy on demonstrations; writes checkpoints, losses.csv and loss.png."""
    from pi0bench.train import TrainConfig, train

    if steps < 1 or batch_size < 1 or (lr is not None and lr <= 0):
        raise UserError("--steps and --batch-size must be at least 1 and --lr positive")
    config = TrainConfig(policy=policy, data=list(data), out=out_dir, model=model, steps=steps,
                         batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every)
    final = train(config, console=err)
    out.print(f"checkpoint: {final}")


@app.command("export")
def export_(
    run_dir: Path = typer.Argument(..., help="a `pi0bench train` run directory"),
    target: Path = typer.Argument(..., help="checkpoint directory to write (EMA weights, fp16)"),
) -> None:
    """Write a run's evaluation weights as a small fp16 checkpoint (for committing or sharing)."""
    from pi0bench.train import export

    export(run_dir, target)
    size = sum(f.stat().st_size for f in target.iterdir()) / 1e6
    out.print(f"{target}: {size:.1f} MB")


@app.command("convert-pi0")
def convert_pi0(
    source: Path = typer.Argument(..., help="directory with published PyTorch π0 weights (model.safetensors)"),
    target: Path = typer.Argument(..., help="pi0bench checkpoint directory to write"),
    data: list[Path] = typer.Option(..., help="dataset(s) whose robots the checkpoint will drive (normalisation)"),
    model: str = typer.Option("pi0", help="config name (pi0, pi0-small) or a Pi0Config JSON file"),
    tokenizer: Optional[Path] = typer.Option(None, help="directory with PaliGemma's tokenizer.model (default: SOURCE)"),
) -> None:
    """Turn full-size π0 weights (openpi PyTorch / LeRobot layout) into a checkpoint `eval` loads."""
    from pi0bench.policies.pi0.published import convert, model_config

    convert(source, target, model_config(model), list(data), tokenizer)
    out.print(f"checkpoint: {target}")


def _policy_args(items: list[str]) -> tuple[tuple[str, object], ...]:
    """NAME=VALUE strings -> (name, value) pairs; values are read as JSON when they parse
    (numbers, true/false), else kept as text."""
    import json

    pairs = []
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--policy-arg {item!r} is not NAME=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        pairs.append((name.strip(), value))
    return tuple(pairs)


def _camera_list(cameras: str | None) -> tuple[str, ...] | None:
    if cameras is None or not cameras.strip():
        return None
    if cameras.strip().lower() == "none":
        return ()
    return tuple(c.strip() for c in cameras.split(",") if c.strip())


def main() -> None:
    """Entry point: a UserError becomes one line on stderr and exit code 2, no traceback."""
    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, never wrapped
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: finished episodes are saved; rerun the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()

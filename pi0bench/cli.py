"""The `pi0bench` command line: tasks, policies, eval, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from pi0bench.errors import UserError
from pi0bench.registry import RECIPES

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Evaluate robot policies on the π0 paper's tasks, re-created in MuJoCo.")
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)


# Options several commands share (typer reads each default's metadata; reusing one is safe).
CELL_SEED = typer.Option(0, help="base seed; every cell plays the same initial states")
CELL_WORKERS = typer.Option(1, help="worker processes per cell")
IMAGE_SIZE = typer.Option(128, help="camera image height and width in pixels")
CAMERAS = typer.Option(None, help="comma-separated cameras (default: the robot's), or none")
CHECKPOINT = typer.Option(None, help="weights for policies that load them")
TIMEOUT = typer.Option(30.0, help="seconds one policy call may take before its episode is an error")
BACKEND = typer.Option("local", help="local (process pool) or ray (needs pi0bench[ray])")
ADDRESS = typer.Option(None, help="Ray cluster address HOST:PORT (default: a local Ray instance)")
# fit-check and curve: a trained checkpoint (or run) against the dataset it learned from
TRAINING_DATA = typer.Option(..., help="the dataset it was trained on (from `pi0bench demos`)")
EPISODE_WORKERS = typer.Option(1, help="parallel episodes")
TRAINED_IMAGE_SIZE = typer.Option(64, help="camera image size it was trained at")
DEVICE = typer.Option(None, help="where learned policies run their model: cpu (default), cuda, cuda:N or mps "
                                  "(part of the run's identity when given)")
SHARED_POLICY = typer.Option(False, help="one policy process holds the model; the workers' calls that "
                                         "arrive together are answered in one batched forward pass")
MAX_BATCH = typer.Option(None, help="with --shared-policy: rows of every forward pass "
                                    "(default --workers; part of the run's identity when > 1)")


@app.command()
def tasks() -> None:
    """List the tasks: robot, instruction, episode length, rubric; then those of task families
    (robosuite/<Env>) when their extra is installed, or how to install it."""
    from pi0bench.registry import TASKS, make_task, task_families

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
    for family, module in task_families().items():
        reason = module.unavailable()
        if reason:
            out.print(reason, soft_wrap=True, markup=False)
            continue
        table = Table(title=f"{family} tasks (success: {family}'s own check, 1 point)")
        for column in ("task", "robot", "action: controller[slice]", "instruction", "seconds"):
            table.add_column(column)
        for name, task in module.TASKS.items():
            robot = task.make_robot()
            table.add_row(name, f"{robot.name} ({robot.action_dim}-D @ {robot.control_hz:g} Hz)",
                          robot.controller, task.instruction, f"{task.episode_seconds:g}")
        out.print(table)


@app.command()
def policies() -> None:
    """List the policies that can be evaluated."""
    from pi0bench.registry import POLICIES, REMOTE, REMOTE_EXAMPLE, describe_policy

    table = Table(title="policies")
    table.add_column("policy")
    table.add_column("what it is")
    for name in sorted(POLICIES):
        table.add_row(name, describe_policy(name))
    table.add_row(REMOTE_EXAMPLE, REMOTE[1])
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
    image_size: int = IMAGE_SIZE,
    cameras: Optional[str] = typer.Option(
        None, help="comma-separated cameras (default: the robot's policy cameras); 'none' renders "
                   "nothing, for privileged-state policies such as scripted"),
    timeout: float = TIMEOUT,
    overwrite: bool = typer.Option(False, help="discard the episodes already in the run directory"),
    checkpoint: Optional[str] = typer.Option(None, help="weights for policies that load them (pi0, act, dp, octo, openvla, openvla-oft)"),
    policy_arg: list[str] = typer.Option([], help="NAME=VALUE option of the policy, repeatable "
                                                  "(act: temporal_ensemble=0.01; dp: inference_steps=16)"),
    backend: str = BACKEND,
    address: Optional[str] = ADDRESS,
    realtime: bool = typer.Option(False, help="simulated time runs on while the policy thinks (also runs a "
                                              "no-latency baseline into OUT/baseline for the report)"),
    realtime_mode: str = typer.Option("naive", help="real-time execution of a late chunk: naive (from its first "
                                                    "row), skip (from the row for now) or rtc (pi0: inpainted)"),
    latency_ms: Optional[float] = typer.Option(None, help="real-time mode with a fixed policy latency instead of "
                                                          "the measured one (exactly reproducible)"),
    latency_jitter_ms: float = typer.Option(0.0, help="with --latency-ms: Gaussian jitter per call (standard "
                                                      "deviation), drawn from the episode's seed"),
    perturb: list[str] = typer.Option([], help="AXIS=LEVEL, repeatable: camera, light, appearance, distractors, "
                                               "language, init, dynamics, sensor at level 1-3"),
    shared_policy: bool = SHARED_POLICY,
    max_batch: Optional[int] = MAX_BATCH,
    device: Optional[str] = DEVICE,
) -> None:
    """Evaluate one policy on one task; rerunning the same command resumes it."""
    from pi0bench.envs.perturb import parse_perturbation
    from pi0bench.evaluate import EvalConfig, evaluate
    from pi0bench.report import results_table

    config = EvalConfig(
        policy=policy, task=task, episodes=episodes, seed=seed, workers=workers, out=out_dir,
        videos=videos, execute_steps=execute_steps, image_size=image_size,
        cameras=_camera_list(cameras),
        timeout_s=timeout if timeout > 0 else None, overwrite=overwrite, checkpoint=checkpoint,
        policy_args=_policy_args(policy_arg, device), backend=backend, address=address,
        realtime=_realtime(realtime, realtime_mode, latency_ms, latency_jitter_ms),
        perturbations=tuple(parse_perturbation(p) for p in perturb),
        shared_policy=shared_policy, max_batch=max_batch,
    )
    summary = evaluate(config, console=err)
    out.print(results_table(summary))
    out.print(f"run directory: {config.run_dir}")


@app.command()
def serve(
    policy: str = typer.Option(..., help="policy name (see `pi0bench policies`)"),
    task: str = typer.Option("towel_fold", help="task whose robot (and per-task weights) the policy is built for"),
    checkpoint: Optional[str] = CHECKPOINT,
    policy_arg: list[str] = typer.Option([], help="NAME=VALUE option of the policy, repeatable"),
    cameras: Optional[str] = typer.Option(None, help="comma-separated cameras the policy reads (default: the robot's)"),
    host: str = typer.Option("127.0.0.1", help="interface to bind; 0.0.0.0 exposes the server to the network"),
    port: int = typer.Option(8000, help="TCP port (0: any free port)"),
    api_key: Optional[str] = typer.Option(None, envvar="PI0BENCH_API_KEY",
                                          help="require this key (openpi's 'Authorization: Api-Key ...' header)"),
    max_message_mb: float = typer.Option(16.0, help="largest observation message accepted"),
    max_batch: int = typer.Option(8, help="most concurrent calls answered by one forward pass (1: one at a time)"),
    batch_window_ms: float = typer.Option(5.0, help="how long a call waits for others to batch with"),
    device: Optional[str] = DEVICE,
) -> None:
    """Serve a policy over openpi's websocket protocol (msgpack); SIGTERM stops it cleanly."""
    from pi0bench.serve import ServeConfig, serve_forever

    serve_forever(ServeConfig(policy=policy, task=task, checkpoint=checkpoint,
                              policy_args=_policy_args(policy_arg, device), cameras=_camera_list(cameras),
                              host=host, port=port, api_key=api_key,
                              max_message_mb=max_message_mb, max_batch=max_batch, batch_window_ms=batch_window_ms))


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a directory of `pi0bench eval`, `compare` or `latency-sweep`")) -> None:
    """Recompute summary, report.md/html and the plots from the stored episodes."""
    from pi0bench import latency_sweep, robustness
    from pi0bench.compare_store import CONFIG_FILE

    if (run_dir / robustness.CONFIG_FILE).is_file():
        out.print(robustness_table(robustness.write_robustness(run_dir)))
        return
    if (run_dir / latency_sweep.CONFIG_FILE).is_file():
        summary = latency_sweep.write_sweep(run_dir)
        out.print(sweep_table(summary))
        return
    if (run_dir / CONFIG_FILE).is_file():
        from pi0bench.compare_report import comparison_table, write_comparison

        out.print(comparison_table(write_comparison(run_dir)))
        return
    from pi0bench.report import results_table, write_report
    from pi0bench.store import RunStore

    store = RunStore(run_dir)
    config = store.config()
    episodes = store.load()
    if episodes.empty:
        raise UserError(f"{run_dir} has no finished episodes yet")
    summary = write_report(store.dir, config, episodes)
    out.print(results_table(summary))


@app.command("compare")
def compare_(
    policies: str = typer.Option("all", help="comma-separated policies, or 'all'"),
    tasks: str = typer.Option("all", help="comma-separated tasks, or 'all'"),
    episodes: int = typer.Option(10, help="episodes per (policy, task) cell"),
    seed: int = typer.Option(0, help="base seed; every policy plays the same initial states"),
    workers: int = CELL_WORKERS,
    out_dir: Path = typer.Option(Path("results/compare"), "--out", help="comparison directory; rerun to resume"),
    image_size: int = IMAGE_SIZE,
    videos: int = typer.Option(0, help="write mp4 videos of the first K episodes of each cell"),
    timeout: float = TIMEOUT,
    backend: str = BACKEND,
    address: Optional[str] = ADDRESS,
    shared_policy: bool = SHARED_POLICY,
    max_batch: Optional[int] = MAX_BATCH,
    device: Optional[str] = DEVICE,
) -> None:
    """Evaluate several policies on several tasks on identical initial states, with paired tests."""
    from pi0bench.compare import CompareConfig, compare, parse_names
    from pi0bench.compare_report import comparison_table
    from pi0bench.registry import POLICIES, TASKS

    config = CompareConfig(policies=parse_names(policies, POLICIES, "policy"),
                           tasks=parse_names(tasks, TASKS, "task"), out=out_dir, episodes=episodes,
                           seed=seed, workers=workers, image_size=image_size, videos=videos,
                           timeout_s=timeout if timeout > 0 else None, backend=backend, address=address,
                           shared_policy=shared_policy, max_batch=max_batch, device=device)
    summary = compare(config, console=err)
    out.print(comparison_table(summary))
    out.print(f"report: {out_dir / 'report.md'}")


@app.command("latency-sweep")
def latency_sweep_(
    policy: str = typer.Option(..., help="policy name (see pi0bench policies)"),
    task: str = typer.Option(..., help="task name (see pi0bench tasks)"),
    latency_ms: str = typer.Option("0,50,100,200,300", help="comma-separated fixed latencies per policy call"),
    modes: str = typer.Option("naive,skip,rtc", help="comma-separated execution modes (naive, skip, rtc)"),
    latency_jitter_ms: float = typer.Option(0.0, help="Gaussian jitter per call (standard deviation), seeded"),
    episodes: int = typer.Option(30, help="episodes per (mode, latency) cell"),
    seed: int = CELL_SEED,
    workers: int = CELL_WORKERS,
    out_dir: Path = typer.Option(Path("results/latency"), "--out", help="sweep directory; rerun to resume"),
    image_size: int = IMAGE_SIZE,
    cameras: Optional[str] = CAMERAS,
    checkpoint: Optional[str] = CHECKPOINT,
    policy_arg: list[str] = typer.Option([], help="NAME=VALUE option of the policy, repeatable "
                                                  "(act: temporal_ensemble=0.01; pi0: rtc_max_guidance=5, noise_scale=0)"),
    timeout: float = TIMEOUT,
    device: Optional[str] = DEVICE,
) -> None:
    """Every (execution mode, latency) cell on the same initial states, with paired tests against naive."""
    from pi0bench.latency_sweep import SweepConfig, latency_sweep

    config = SweepConfig(policy=policy, task=task, out=out_dir, latencies_ms=_numbers(latency_ms, "--latency-ms"),
                         modes=tuple(m.strip() for m in modes.split(",") if m.strip()),
                         jitter_ms=latency_jitter_ms, episodes=episodes, seed=seed, workers=workers,
                         image_size=image_size, cameras=_camera_list(cameras), checkpoint=checkpoint,
                         policy_args=_policy_args(policy_arg, device), timeout_s=timeout if timeout > 0 else None)
    out.print(sweep_table(latency_sweep(config, console=err)))
    out.print(f"report: {out_dir / 'report.md'}")


def _cells_table(kind: str, summary: dict, columns: tuple[str, ...], rows) -> Table:
    """A multi-cell run's table: `columns` headed, then for each cell the columns `rows` gives it
    (its own, then episodes, success and mean score, then one last column of its own)."""
    config = summary["config"]
    table = Table(title=f"{kind}: {config['policy']} on {config['task']}")
    for name in (*columns[:-1], "episodes", "success", "mean score", columns[-1]):
        table.add_column(name)
    for r in summary["cells"]:
        first, last = rows(r)
        table.add_row(*first, str(r["episodes"]), f"{100 * r['success_rate']:.0f} %", f"{r['mean_score']:.3f}", last)
    return table


def sweep_table(summary: dict) -> Table:
    return _cells_table("latency sweep", summary, ("mode", "latency ms", "steps waiting"),
                        lambda r: ((r["mode"], f"{r['latency_ms']:g}"), f"{100 * r['waiting_share']:.0f} %"))


def _numbers(text: str, option: str, kind: type = float) -> tuple:
    """'0,50,100' -> (0.0, 50.0, 100.0); with kind=int, '1.5' is an error, never truncated."""
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        noun = "whole numbers" if kind is int else "numbers"
        raise UserError(f"{option} takes comma-separated {noun} (got {text!r})") from None


@app.command("robustness")
def robustness_(
    policy: str = typer.Option(..., help="policy name (see pi0bench policies)"),
    task: str = typer.Option(..., help="task name (one of the project's tasks)"),
    axes: str = typer.Option("all", help="comma-separated axes (camera, light, appearance, distractors, language, "
                                         "init, dynamics, sensor), or all"),
    levels: str = typer.Option("1,2,3", help="comma-separated levels, 1 (mild) to 3 (strong)"),
    episodes: int = typer.Option(30, help="episodes per cell (clean and each axis x level)"),
    out_dir: Path = typer.Option(Path("results/robustness"), "--out", help="robustness directory; rerun to resume"),
    seed: int = CELL_SEED,
    workers: int = CELL_WORKERS,
    image_size: int = IMAGE_SIZE,
    cameras: Optional[str] = CAMERAS,
    checkpoint: Optional[str] = CHECKPOINT,
    policy_arg: list[str] = typer.Option([], help="NAME=VALUE option of the policy, repeatable"),
    timeout: float = TIMEOUT,
    backend: str = BACKEND,
    address: Optional[str] = ADDRESS,
    device: Optional[str] = DEVICE,
) -> None:
    """Clean and every (axis, level) perturbation on the same initial states, paired with clean."""
    from pi0bench.envs.perturb import AXES
    from pi0bench.robustness import RobustnessConfig, robustness

    chosen = AXES if axes.strip() == "all" else tuple(a.strip() for a in axes.split(",") if a.strip())
    config = RobustnessConfig(policy=policy, task=task, out=out_dir, axes=chosen,
                              levels=_numbers(levels, "--levels", int), episodes=episodes,
                              seed=seed, workers=workers, image_size=image_size, cameras=_camera_list(cameras),
                              checkpoint=checkpoint, policy_args=_policy_args(policy_arg, device),
                              timeout_s=timeout if timeout > 0 else None, backend=backend, address=address)
    out.print(robustness_table(robustness(config, console=err)))
    out.print(f"report: {out_dir / 'report.md'}")


def robustness_table(summary: dict) -> Table:
    def row(r: dict):
        diff = ("-" if r["axis"] == "clean" else
                f"{r['score_difference']:+.3f} [{r['score_difference_ci_low']:+.3f}, {r['score_difference_ci_high']:+.3f}]")
        return (r["axis"], str(r["level"] or "-")), diff

    return _cells_table("robustness", summary, ("axis", "level", "score − clean [95% CI]"), row)


@app.command("regress")
def regress_(
    reference: Path = typer.Option(Path("results/reference/ci.json"), help="reference file (cells and their episodes)"),
    out_dir: Path = typer.Option(Path("results/runs/regress"), "--out", help="where the fresh runs are written"),
    workers: int = CELL_WORKERS,
    update: bool = typer.Option(False, help="store this run as the new reference (after a deliberate change)"),
) -> None:
    """Re-run the reference cells on the same seeds; exit 1 if any cell's sim score dropped."""
    from pi0bench.regress import regress

    results = regress(reference, out_dir, workers=workers, update=update, console=err)
    if results is None:
        out.print(f"reference updated: {reference}")
        return
    table = Table(title=f"regression check against {reference}")
    for name in ("policy", "task", "episodes", "success ref → new", "p", "score ref → new", "p",
                 "detects a drop of", "verdict"):
        table.add_column(name)
    for r in results:
        detects = "never fails" if r.detectable_drop is None else f"{100 * r.detectable_drop:.0f} pts {r.detectable_in}"
        table.add_row(r.policy, r.task, str(r.episodes), f"{r.reference_success:.2f} → {r.new_success:.2f}",
                      f"{r.p_success:.3g}", f"{r.reference_score:.3f} → {r.new_score:.3f}", f"{r.p_score:.3g}",
                      detects, "[red]REGRESSED[/]" if r.regressed else "ok")
    out.print(table)
    if any(r.regressed for r in results):
        raise typer.Exit(1)


@app.command()
def demos(
    task: str = typer.Option(..., help="task to demonstrate"),
    episodes: int = typer.Option(..., help="expert episodes to attempt; only successes are kept"),
    out_dir: Path = typer.Option(..., "--out", help="dataset directory (LeRobot v3.0 layout)"),
    seed: int = typer.Option(1, help="base seed (evaluations default to 0, so their initial states differ)"),
    image_size: int = typer.Option(64, help="camera image height and width in pixels"),
    noise: Optional[float] = typer.Option(None, help="std (rad) of the smooth noise added to executed arm joint "
                                                      "targets (default: the task's, see the README)"),
    cameras: Optional[str] = typer.Option(None, help="comma-separated cameras (default: the robot's policy cameras)"),
    workers: int = typer.Option(1, help="episodes recorded in parallel (the dataset is the same for any number)"),
) -> None:
    """Record scripted-expert demonstrations as a LeRobot v3.0 dataset. Resumable: after an
    interruption, the same command keeps every finished episode and records the rest."""
    from pi0bench.demos import DemoConfig, record_demos

    config = DemoConfig(task=task, episodes=episodes, out=out_dir, seed=seed, image_size=image_size,
                        noise=noise, cameras=_camera_list(cameras), workers=workers)
    result = record_demos(config, console=err)
    out.print(f"{result['kept']} of {result['attempted']} episodes kept in {result['out']}")


@app.command()
def replay(
    data: Path = typer.Option(..., help="dataset directory from `pi0bench demos`"),
    episodes: Optional[int] = typer.Option(None, help="replay only the first N episodes"),
) -> None:
    """Re-play a dataset open-loop from its recorded seeds: the executed commands must
    reproduce it exactly; the clean actions' success rate is printed beside them."""
    from pi0bench.replay import replay_dataset

    results = replay_dataset(data, episodes)
    n = len(results)
    executed_ok = sum(r.executed_success for r in results)
    clean_ok = sum(r.clean_success for r in results)
    exact = sum(r.executed_success and r.executed_state_error == 0.0 for r in results)
    table = Table("replayed", "episodes", "succeeded", "max state error")
    table.add_row("executed commands (action.executed)", str(n), f"{executed_ok} ({100.0 * executed_ok / n:.0f} %)",
                  f"{max(r.executed_state_error for r in results):.3g}")
    table.add_row("clean actions (action), open loop", str(n), f"{clean_ok} ({100.0 * clean_ok / n:.0f} %)", "-")
    out.print(table)
    if exact < n:
        err.print(f"[red]{n - exact} of {n} episodes did not replay exactly: the dataset does not match this "
                  "environment[/]")
        raise typer.Exit(1)


@app.command("train")
def train_(
    policy: str = typer.Option(..., help=f"trainable policy ({', '.join(RECIPES)})"),
    data: list[Path] = typer.Option(..., help="dataset directory from `pi0bench demos`; repeat for several tasks"),
    out_dir: Path = typer.Option(..., "--out", help="run directory; rerunning the same command resumes it"),
    model: Optional[str] = typer.Option(None, help="model size: pi0-small|pi0, act-small|act, dp-small|dp, "
                                                   "octo-tiny|octo-small, openvla-small|openvla-7b, openvla-oft-small "
                                                   "(default: the small one)"),
    steps: int = typer.Option(2000, help="optimizer steps"),
    batch_size: int = typer.Option(32, help="windows per step"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate, warm-up then cosine decay "
                                                  "(default: the model config's)"),
    seed: int = typer.Option(0, help="seed of the initial weights and of every batch"),
    checkpoint_every: int = typer.Option(200, help="steps between checkpoints"),
    milestones: str = typer.Option("0.25,0.5,1", help="fractions of --steps whose weights are kept as "
                                                      "checkpoints/step-N (for `pi0bench curve`)"),
    threads: int = typer.Option(1, help="torch threads (set it explicitly: two jobs on two cores must not oversubscribe)"),
    init_from: Optional[Path] = typer.Option(None, help="warm start: begin a new run (its own schedule) from this "
                                                         "checkpoint's weights and normalisation, e.g. a finished run's checkpoints/last"),
    model_arg: list[str] = typer.Option([], help="NAME=VALUE: set a field of the model config, repeatable "
                                                  "(dp: noise_draws=4; pi0: image_pool=1)"),
) -> None:
    """Train a policy on demonstrations; writes checkpoints, losses.csv and loss.png."""
    from pi0bench.train import TrainConfig, train

    if steps < 1 or batch_size < 1 or threads < 1 or (lr is not None and lr <= 0):
        raise UserError("--steps, --batch-size and --threads must be at least 1 and --lr positive")
    try:
        fractions = tuple(float(f) for f in milestones.split(","))
    except ValueError:
        raise UserError(f"--milestones takes fractions like 0.25,0.5,1 (got {milestones!r})") from None
    if not all(0 < f <= 1 for f in fractions):
        raise UserError(f"--milestones must lie in (0, 1] (got {milestones!r})")
    config = TrainConfig(policy=policy, data=list(data), out=out_dir, model=model, steps=steps,
                         batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
                         milestones=fractions, threads=threads, init_from=init_from,
                         model_args=_name_values(model_arg, "--model-arg"))
    final = train(config, console=err)
    out.print(f"checkpoint: {final}")


def _fit_table(rows, title: str) -> Table:
    table = Table("states", "episodes", "success [95 % Wilson CI]", "mean score [95 % CI]", title=title)
    for r in rows:
        table.add_row(r.split, str(r.episodes),
                      f"{100 * r.successes / r.episodes:.0f} % [{100 * r.success_ci[0]:.0f}, {100 * r.success_ci[1]:.0f}]",
                      f"{r.mean_score:.3f} [{r.score_ci[0]:.3f}, {r.score_ci[1]:.3f}]")
    return table


@app.command("fit-check")
def fit_check_(
    checkpoint: Path = typer.Option(..., help="a checkpoint directory (pi0bench train's checkpoints/…, or exported)"),
    data: Path = TRAINING_DATA,
    episodes: int = typer.Option(20, help="episodes on each side: training states and held-out states"),
    out_dir: Path = typer.Option(..., "--out", help="directory for the two runs (resumable)"),
    workers: int = EPISODE_WORKERS,
    image_size: int = TRAINED_IMAGE_SIZE,
) -> None:
    """Under-fitting or generalisation? A checkpoint on its own training episodes' initial
    states and on held-out ones, side by side."""
    from pi0bench.curve import fit_check

    rows = fit_check(checkpoint, data, episodes, out_dir, workers, err, image_size=image_size)
    out.print(_fit_table(rows, str(checkpoint)))


@app.command()
def curve(
    run: Path = typer.Option(..., help="a `pi0bench train` run directory with milestone checkpoints"),
    out_dir: Path = typer.Option(..., "--out", help="where curve.csv, curve.png and the runs go (resumable)"),
    data: Path = TRAINING_DATA,
    episodes: int = typer.Option(50, help="episodes per milestone on each side (training / held-out states)"),
    workers: int = EPISODE_WORKERS,
    image_size: int = TRAINED_IMAGE_SIZE,
) -> None:
    """The learning curve of a training run: every milestone checkpoint fit-checked."""
    from pi0bench.curve import learning_curve

    path = learning_curve(run, data, episodes, out_dir, workers, err, image_size=image_size)
    out.print(f"{path} and {path.with_suffix('.png')}")


@app.command("chunk-error")
def chunk_error_(
    checkpoint: Path = typer.Option(..., help="a checkpoint directory (pi0bench train's checkpoints/…, or exported)"),
    data: Path = TRAINING_DATA,
    windows: int = typer.Option(64, help="dataset windows to predict (drawn with --seed)"),
    seed: int = typer.Option(0, help="seed of the window draw"),
    rows: Optional[int] = typer.Option(None, help="compare each chunk's first ROWS rows (default: those the loop executes)"),
    image_size: int = TRAINED_IMAGE_SIZE,
    policy_arg: list[str] = typer.Option([], help="NAME=VALUE option of the policy, repeatable (pi0: noise_scale=0)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the result to this JSON file"),
) -> None:
    """How closely a checkpoint's chunks reproduce its demonstrations, open loop: the error of
    the executed rows against the recorded actions, the spread between two noise draws, and
    the motion those rows cover."""
    import json

    from pi0bench.chunk_error import chunk_error

    result = chunk_error(checkpoint, data, windows, seed, image_size, dict(_policy_args(policy_arg)), rows)
    table = Table("action dim", "error", "spread (two draws)", "hold (motion covered)",
                  title=f"{result.policy} on {result.windows} windows of {data} ({result.rows} rows each)")
    for d, (e, s, h) in enumerate(zip(result.error, result.spread, result.hold)):
        table.add_row(str(d), f"{e:.4f}", f"{s:.4f}", f"{h:.4f}")
    table.add_row("mean", *(f"{sum(v) / len(v):.4f}" for v in (result.error, result.spread, result.hold)))
    out.print(table)
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


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


def _realtime(on: bool, mode: str, latency_ms: float | None, jitter_ms: float):
    """The real-time settings of a command line, or None for the normal loop."""
    from pi0bench.realtime import Realtime

    if not (on or latency_ms is not None or jitter_ms or mode != "naive"):
        return None
    return Realtime(mode=mode, latency_ms=latency_ms, jitter_ms=jitter_ms)


def _name_values(items: list[str], flag: str, given: list[tuple[str, object]] | None = None,
                 given_by: str = "") -> tuple[tuple[str, object], ...]:
    """NAME=VALUE strings of `flag` -> (name, value) pairs after `given` (set by the option
    `given_by`); values are read as JSON when they parse (numbers, true/false, lists), else
    kept as text."""
    import json

    pairs = list(given or [])
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"{flag} {item!r} is not NAME=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if any(name.strip() == known for known, _ in pairs):
            raise UserError(f"{name.strip()!r} is given twice ({flag}{' or ' + given_by if given_by else ''})")
        pairs.append((name.strip(), value))
    return tuple(pairs)


def _policy_args(items: list[str], device: str | None = None) -> tuple[tuple[str, object], ...]:
    """--policy-arg NAME=VALUE pairs; `--device` is the policy option `device`."""
    return _name_values(items, "--policy-arg", [("device", device)] if device is not None else [], "--device")


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

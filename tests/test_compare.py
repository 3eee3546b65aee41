"""`pi0bench compare`: paired statistics against known values, identical initial states across
policies, n/a cells, resume, report rebuild, and the CSV/JSON schema."""

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pi0bench.compare import CompareConfig, compare, parse_names
from pi0bench.compare_report import write_comparison
from pi0bench.errors import UserError
from pi0bench.paired import mcnemar_exact, paired_comparison, sign_test
from pi0bench.registry import POLICIES


def test_mcnemar_exact_against_known_values():
    a = np.array([True] * 4 + [False] * 6 + [True] * 5)
    b = np.array([True] * 4 + [True] * 6 + [False] * 0 + [True] * 5)
    result = mcnemar_exact(a, b)  # 0 vs 6 discordant: p = 2 * 0.5**6
    assert (result["only_a"], result["only_b"]) == (0, 6) and result["p_value"] == pytest.approx(0.03125)
    b2 = np.array([False] * 2 + [True] * 8)
    a2 = np.array([True] * 2 + [False] * 1 + [True] * 7)  # 2 vs 1 discordant: p = 1
    assert mcnemar_exact(a2, b2)["p_value"] == pytest.approx(1.0)
    assert mcnemar_exact(a2, a2)["p_value"] == 1.0  # no discordant pairs, no evidence


def test_sign_test_and_paired_difference():
    a = np.array([1.0, 0.8, 0.6, 0.6, 0.5, 0.9, 0.7, 1.0, 0.4])
    b = np.array([0.5, 0.2, 0.6, 0.1, 0.0, 0.3, 0.2, 0.4, 0.1])  # a higher 8 times, 1 tie
    assert sign_test(a, b)["p_value"] == pytest.approx(2 * 0.5**8)
    result = paired_comparison(a > 0.65, b > 0.65, a, b)
    assert result["score_difference"] == pytest.approx(np.mean(a - b))
    lo, hi = result["score_difference_ci"]
    assert 0 < lo <= result["score_difference"] <= hi


def test_names_parse_and_unknown_ones_are_one_clear_error():
    assert parse_names("all", POLICIES, "policy") == tuple(sorted(POLICIES))
    assert parse_names("hold, scripted,hold", POLICIES, "policy") == ("hold", "scripted")
    with pytest.raises(UserError, match="unknown policy 'nope'"):
        parse_names("hold,nope", POLICIES, "policy")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    from pi0bench import checkpoint

    out = tmp_path_factory.mktemp("compare")
    empty = tmp_path_factory.mktemp("no-checkpoints")
    original = checkpoint.CHECKOUT_CHECKPOINTS
    checkpoint.CHECKOUT_CHECKPOINTS = empty  # so act has no checkpoint for the task: an n/a cell
    try:
        config = CompareConfig(policies=("scripted", "hold", "act"), tasks=("drawer_tidy",), out=out,
                               episodes=3, workers=2, image_size=32, videos=1)
        summary = compare(config)
    finally:
        checkpoint.CHECKOUT_CHECKPOINTS = original
    return config, summary


def test_every_policy_plays_the_same_initial_states(comparison):
    config, summary = comparison
    seeds = {}
    for policy in ("scripted", "hold"):
        frame = pd.read_parquet(config.out / "cells" / f"{policy}-drawer_tidy" / "episodes")
        seeds[policy] = frame.sort_values("episode")["episode_seed"].tolist()
    assert seeds["scripted"] == seeds["hold"] and len(set(seeds["hold"])) == 3
    cells = {c["policy"]: c for c in summary["cells"]}
    assert cells["scripted"]["successes"] == 3 and cells["hold"]["successes"] == 0
    assert [n["policy"] for n in summary["not_applicable"]] == ["act"]
    pair = summary["pairwise"][0]
    assert (pair["a"], pair["b"], pair["success"]["only_a"], pair["success"]["only_b"]) == ("scripted", "hold", 3, 0)
    assert pair["success"]["p_holm"] >= pair["success"]["p_value"]  # adjusted over the family
    report = (config.out / "report.md").read_text()
    assert "**100 %" in report and "n/a" in report and "McNemar" in report  # bold in Markdown
    page = (config.out / "report.html").read_text()
    assert page.count("<video") == 2 and "drawer_tidy, episode 0" in page  # scripted and hold, same start


def test_report_rebuilds_identically_and_schema_holds(comparison):
    config, summary = comparison
    before = {name: (config.out / name).read_text() for name in ("summary.json", "summary.csv", "report.md")}
    write_comparison(config.out)
    assert before == {name: (config.out / name).read_text() for name in before}
    frame = pd.read_csv(config.out / "summary.csv")
    for column in ("policy", "task", "episodes", "successes", "success_rate", "success_ci_low", "success_ci_high",
                   "mean_score", "score_ci_low", "score_ci_high", "errors", "latency_mean_ms", "stage:drawer_opened"):
        assert column in frame.columns
    assert len(frame) == 2
    data = json.loads(before["summary.json"])
    assert set(data) == {"compare", "cells", "not_applicable", "pairwise", "aggregate"}
    assert {p.name for p in config.out.glob("*.png")} == {"scores.png", "stages.png", "latency.png"}


class _Page(HTMLParser):
    """Checks that tags nest and close, and collects the text and the embedded media."""

    VOID = {"meta", "img", "br", "hr", "source", "input", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.media, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("img", "video") and "src" in attrs:
            self.media.append((tag, attrs["src"]))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"</{tag}> closes nothing open")

    def handle_data(self, data):
        self.text.append(data)


def test_the_html_page_is_html_with_every_image_and_video_decodable(comparison):
    import base64

    config, _ = comparison
    page = _Page()
    page.feed((config.out / "report.html").read_text())
    page.close()
    assert page.errors == [] and page.stack == []
    text = " ".join(page.text)
    for marker in ("**", "](", "|---", "## "):
        assert marker not in text, f"Markdown marker {marker!r} in the HTML text"
    assert "<strong>" in (config.out / "report.html").read_text()  # the best cell, in bold for real
    images = [src for tag, src in page.media if tag == "img"]
    videos = [src for tag, src in page.media if tag == "video"]
    assert len(images) == 3 and len(videos) == 2
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for src in videos:  # linked, relative to the page, so the directory moves as one
        film = config.out / src
        assert not Path(src).is_absolute() and ".." not in Path(src).parts
        assert film.resolve().is_relative_to(config.out.resolve())
        assert film.read_bytes()[4:8] == b"ftyp"  # an MP4 box header
    assert "data:video" not in (config.out / "report.html").read_text()


def test_the_pair_matrix_agrees_with_the_pairwise_results(comparison):
    from pi0bench.compare_report import pair_matrix

    config, summary = comparison
    matrix = pair_matrix(summary["pairwise"], "drawer_tidy")
    pair = summary["pairwise"][0]
    assert matrix[("scripted", "hold")]["difference"] == pair["score_difference"]
    assert matrix[("hold", "scripted")]["difference"] == -pair["score_difference"]
    assert matrix[("hold", "scripted")]["ci"] == [-pair["score_difference_ci"][1], -pair["score_difference_ci"][0]]
    report = (config.out / "report.md").read_text()
    expected = f"{pair['score_difference']:+.2f} [{pair['score_difference_ci'][0]:+.2f}"
    assert "Who beats whom on drawer_tidy" in report and expected in report
    assert "3 rows" not in report and "<details>" in (config.out / "report.html").read_text()


def test_each_figure_is_written_at_its_stated_size(comparison):
    from pi0bench import compare_report
    from pi0bench.plots import DPI, png_size

    config, _ = comparison
    width, height = compare_report.SCORE_FIGURE_IN
    assert png_size((config.out / "scores.png").read_bytes()) == (round(width * DPI), round(height * DPI))
    stages = png_size((config.out / "stages.png").read_bytes())
    assert stages == (round((3.6 * 1 + 1.6) * DPI), round(3.2 * DPI))  # one task panel


# last: it rewrites the comparison directory with one policy
def test_rerunning_resumes_without_replaying_episodes(comparison):
    config, _ = comparison
    episodes = config.out / "cells" / "hold-drawer_tidy" / "episodes"
    stamps = {p.name: p.stat().st_mtime_ns for p in episodes.iterdir()}
    compare(CompareConfig(policies=("hold",), tasks=("drawer_tidy",), out=config.out, episodes=3, image_size=32,
                          videos=1))
    assert stamps == {p.name: p.stat().st_mtime_ns for p in episodes.iterdir()}

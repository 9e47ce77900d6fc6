"""ci/publish_results.py: publishes only a clean run from a clean tree, leaves resume state behind, records both
commits."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def publisher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The module with ROOT pointing at a fresh one-commit git repository holding papers/demo/."""
    monkeypatch.syspath_prepend(str(ROOT / "ci"))
    spec = importlib.util.spec_from_file_location("publish_results", ROOT / "ci" / "publish_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    repo = tmp_path / "repo"
    (repo / "papers" / "demo").mkdir(parents=True)
    (repo / "papers" / "demo" / "README.md").write_text("demo\n")
    (repo / ".gitignore").write_text("build/\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    monkeypatch.setattr(module, "ROOT", repo)
    return module, repo


def make_run(repo: Path, dirty: bool, attempts: list[dict] | None = None) -> Path:
    run = repo / "build" / "reproduce" / "demo" / "small"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints" / "step_00000002.pt").write_bytes(b"x")
    (run / "progress.pkl").write_bytes(b"x")
    (run / "results.md").write_text("| a | b |\n")
    (run / "run_info.json").write_text(json.dumps({"commit": "abc123", "dirty": dirty, "attempts": attempts or []}))
    return run


def test_clean_run_is_published_without_its_resume_state(publisher) -> None:
    module, repo = publisher
    make_run(repo, dirty=False)
    dest = module.publish("demo", "small")
    assert sorted(p.name for p in dest.iterdir()) == ["PUBLISHED.json", "results.md", "run_info.json"]
    record = json.loads((dest / "PUBLISHED.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert record["run_commit"] == "abc123" and record["published_at_commit"] == head
    assert record["run_commits"] == ["abc123"]


def test_a_run_resumed_at_another_commit_names_both_and_a_dirty_resume_is_refused(publisher) -> None:
    module, repo = publisher
    make_run(repo, dirty=False, attempts=[{"commit": "def456", "dirty": False}])
    assert json.loads((module.publish("demo", "small") / "PUBLISHED.json").read_text())["run_commits"] == [
        "abc123", "def456"]
    make_run(repo, dirty=False, attempts=[{"commit": "def456", "dirty": True}])
    with pytest.raises(SystemExit, match="dirty tree"):
        module.publish("demo", "small")


def test_dirty_run_or_dirty_tree_is_refused(publisher) -> None:
    module, repo = publisher
    make_run(repo, dirty=True)
    with pytest.raises(SystemExit, match="produced from a dirty tree"):
        module.publish("demo", "small")
    (repo / "papers" / "demo" / "README.md").write_text("edited\n")
    with pytest.raises(SystemExit, match="uncommitted changes"):
        module.publish("demo", "small")
    assert not (repo / "papers" / "demo" / "results").exists()

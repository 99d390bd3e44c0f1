"""Fixtures shared by several test modules, and the test tiers.

Tiers (markers, registered in pyproject.toml): ``slow`` trains for real, ``e2e`` runs the
workflow (Snakemake, DVC) as a user would, ``slurm`` needs a SLURM cluster, ``browser`` a
headless Chromium. A test with none of them is ``fast`` (added here), the tier of the edit loop:
``make test-fast`` runs it, ``make test`` runs every tier.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from ferbench.train.trainer import Trainer

#: the markers that take a test out of the fast tier
TIERS = ("slow", "e2e", "slurm", "browser")


@pytest.hookimpl(tryfirst=True)   # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    """Unmarked tests are fast. The longest work is started first, so that the pytest-xdist
    workers do not end with one long file running alone (make test hands out whole files, in
    the order of their first test here: --dist loadfile --no-loadscope-reorder): SLURM, the
    workflow runs, the trainings, then the rest. The order within each of these, and so within
    a module, stays the file order (a sort is stable)."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.fast)

    def rank(item) -> tuple[int, float]:
        tier = next((i for i, name in enumerate(("slurm", "e2e", "slow"))
                     if item.get_closest_marker(name)), 3)
        # within a tier, a module that declares its length (MINUTES, one worker's) goes first
        return tier, -float(getattr(item.module, "MINUTES", 0) or 0)

    items.sort(key=rank)


def pytest_configure(config):
    """Under pytest-xdist, each worker's torch takes its share of the cores, not all of them
    (two workers with a thread per core each would thrash on a 2-core machine)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def shared_once(tmp_path_factory):
    """``shared_once(name, build) -> Path``: a directory that ``build(path)`` fills once per
    test run and every pytest-xdist worker reads (the first worker to ask builds it under a
    file lock, the others wait for it). Tests only read it: what they write goes to their own
    tmp_path."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent   # the run's temp dir, above each worker's own
    def get(name: str, build) -> Path:
        path = base / f"shared-{name}"
        with FileLock(str(path) + ".lock"):
            if not (path / ".complete").exists():
                shutil.rmtree(path, ignore_errors=True)   # a build that failed half-way
                path.mkdir()
                build(path)
                (path / ".complete").touch()
        return path
    return get


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads; on a busy 2-core machine OpenMP thrashing costs
    more than it gives. The previous thread count is restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class SimulatedKill(RuntimeError):
    """Raised by ``killed_after_step`` where a kill would stop the job."""


@pytest.fixture
def killed_after_step(monkeypatch):
    """``with killed_after_step(n): <a training run>``: the run stops after step n, once that
    step's checkpoint (if any) is written, as a kill of the job between two steps would leave
    it; the block fails if the run was not stopped there. Runs outside the block finish.

    The stop is one of the trainer's own per-step callbacks (``Trainer.step_callbacks``), added
    to every trainer that starts fitting inside the block: the library carries no test hook."""
    armed: dict[str, int | None] = {"step": None}
    fit = Trainer.fit

    def fit_then_kill(self, *args, **kwargs):
        after = armed["step"]
        if after is not None:
            def kill(step: int) -> None:
                if step >= after:
                    raise SimulatedKill(f"killed after step {step}")
            self.step_callbacks.append(kill)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", fit_then_kill)

    @contextlib.contextmanager
    def killed(step: int):
        armed["step"] = step
        try:
            with pytest.raises(SimulatedKill, match=f"^killed after step {step}$"):
                yield
        finally:
            armed["step"] = None

    return killed

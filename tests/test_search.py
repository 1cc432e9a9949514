"""Model search: an Optuna study on a two-worker Dask LocalCluster (--quick), persisted and resumable, its
figures equal to a fresh compile and bench of each saved model, and a worker killed mid-trial."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from lwcnn_mcu import search
from lwcnn_mcu.errors import LwcnnError

HAVE_DATA = bool(os.environ.get("LWCNN_DATASETS")) and Path(os.environ["LWCNN_DATASETS"]).is_dir()
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_all = pytest.mark.skipif(not (HAVE_DATA and HAVE_ARM),
                               reason="needs LWCNN_DATASETS, arm-none-eabi-gcc and qemu-system-arm")


def test_arch_of_params_and_budgets():
    p = {"blocks": 3, "b1_width": 8, "b1_kernel": 5, "b1_pool": True, "b2_width": 16, "b2_kernel": 3,
         "b2_separable": True, "b2_pool": False, "b3_width": 12, "b3_kernel": 3, "b3_separable": False,
         "b3_pool": True, "head": "gap"}
    assert search.arch_of(p, 28) == "c8k5-p-d16-c12-p-gap"
    # poolings that would shrink the map below 1x1 are left out
    deep = {"blocks": 5, "head": "flat", **{f"b{i}_{k}": v for i in range(1, 6)
                                            for k, v in (("width", 4), ("kernel", 3), ("pool", True))}}
    assert search.arch_of(deep, 28).count("p") == 4
    from lwcnn_mcu import training

    assert training.build_backbone("c8k5-p-d16-c12-p-gap", (28, 28, 1)).count_params() > 0
    with pytest.raises(LwcnnError, match="unknown architecture 'c8-x-flat'"):
        training.parse_arch("c8-x-flat")
    b = search.Budgets(max_params=1000, max_instructions=5)
    assert b.broken({"keras_params": 1001, "instructions": 5, "arena_bytes": 10**9}) == ["keras_params 1,001 > 1,000"]


def test_pareto_front():
    rows = [{"trial": 0, "val_accuracy": 0.9, "instructions": 100, "arena_bytes": 10},
            {"trial": 1, "val_accuracy": 0.8, "instructions": 200, "arena_bytes": 10},  # dominated by 0
            {"trial": 2, "val_accuracy": 0.95, "instructions": 300, "arena_bytes": 20},
            {"trial": 3, "val_accuracy": 0.7, "instructions": 50, "arena_bytes": 30}]
    assert [r["trial"] for r in search.pareto_front(rows)] == [3, 0, 2]


def test_storage_strings(tmp_path):  # noqa: ANN001
    assert search.check_storage(f"sqlite:///{tmp_path}/a.db") == f"sqlite:///{tmp_path}/a.db"
    assert search.check_storage(str(tmp_path / "j.log")) == str(tmp_path / "j.log")
    assert search.check_storage("dask") == "dask"
    with pytest.raises(LwcnnError, match="--storage redis://x"):
        search.check_storage("redis://x")


@needs_all
def test_a_budget_prunes_before_training(tmp_path):  # noqa: ANN001
    cfg = search.SearchConfig("mnist", "qemu-m4", search.Budgets(max_arena=64), quick=True, epochs=1)
    p = {"blocks": 1, "b1_width": 8, "b1_kernel": 3, "b1_pool": True, "head": "gap", "lr": 2e-3, "batch": 64,
         "augment": 1.0, "stage2_steps": 1, "stage2_lr": 1e-4}
    r = search.run_trial(cfg, 0, -1, p, str(tmp_path / "none.log"))
    assert r["state"] == "pruned" and "arena_bytes" in r["reason"] and not r["files"]
    assert "train_s" not in r["figures"]  # it never trained


@pytest.fixture(scope="module")
def cluster():  # noqa: ANN201
    c = search.start_cluster(None, 2)
    yield c
    c.close()


def _fresh(model: str) -> dict:
    from lwcnn_mcu import bench, compiler

    c = compiler.compile_model(model, dataset="mnist")
    r = bench.run_bench(board="qemu-m4", port=None, model=model, dataset="mnist", data=None, labels=None,
                        samples=1, layers=False)
    return {"params": c.report["params"], "arena_bytes": c.report["arena_bytes"],
            "instructions": int(r["instructions"]["median"])}


@needs_all
@pytest.mark.slow
def test_quick_search_on_two_workers_resumes_and_survives_a_killed_worker(tmp_path, cluster):  # noqa: ANN001
    import optuna

    cfg = search.SearchConfig("mnist", "qemu-m4", quick=True, epochs=1)
    url = f"sqlite:///{tmp_path}/s.db"
    r1 = search.run_search(cfg, trials=4, study_name="t", storage=url, out_dir=tmp_path, client=cluster.client)
    assert (tmp_path / "s.db").is_file() and r1["study"] == "t" and r1["storage"] == url
    assert r1["trials_done"] == 4 and r1["trials"]["complete"] == 4 and r1["pareto"]
    for row in r1["pareto"]:
        assert set(row) >= {"trial", "model", "params", "macs", "arena_bytes", "flash_bytes", "instructions",
                            "val_accuracy"}
        card = json.loads(Path(row["model"]).with_suffix(".json").read_text())  # the card `train` writes
        assert card["search"]["trial"] == row["trial"] and "int8_test_accuracy" in card
    # every trained trial's figures equal a fresh compile and bench of its saved model
    done = r1["all_feasible"]
    fresh = cluster.client.gather(cluster.client.map(_fresh, [row["model"] for row in done], pure=False))
    for row, f in zip(done, fresh, strict=True):
        assert {k: row[k] for k in f} == f, row["trial"]

    # the same study again, 2 more trials; a worker is killed while it trains one of them
    before = {t.number: (t.state, t.values) for t in optuna.load_study(study_name="t", storage=url).trials}
    st = search.open_storage(url)
    out: dict = {}
    th = threading.Thread(target=lambda: out.update(r=search.run_search(
        cfg, trials=2, study_name="t", storage=url, out_dir=tmp_path, client=cluster.client)))
    th.start()
    killed, deadline = None, time.time() + 240
    while killed is None and time.time() < deadline and th.is_alive():
        for t in st.get_all_trials(st.get_study_id_from_name("t"), deepcopy=False):
            if t.number >= 4 and t.user_attrs.get("phase") == "training" and t.user_attrs.get("pid"):
                os.kill(int(t.user_attrs["pid"]), signal.SIGKILL)
                killed = t.number
                break
        time.sleep(0.2)
    th.join(600)
    assert killed is not None, "no trial of the second run was seen training"
    r2 = out["r"]
    after = {t.number: t for t in optuna.load_study(study_name="t", storage=url).trials}
    assert all(after[n].state == s and after[n].values == v for n, (s, v) in before.items())  # finished: kept
    assert len(after) >= 6 and r2["trials"]["running"] == 0
    assert after[killed].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    assert r2["trials_done"] + r2["trials"]["fail"] == len(after) >= 6

    # --show reports the stored study without running anything
    from typer.testing import CliRunner

    from lwcnn_mcu.cli import app

    res = CliRunner().invoke(app, ["search", "--show", "t", "--storage", url, "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown["trials_done"] == r2["trials_done"] and shown["pareto"] and (tmp_path / "t" / "pareto.png").is_file()

"""Hardware-aware model search: an Optuna study whose trials run on Dask.

Three objectives, all exact: maximize the int8 validation accuracy of the compiled model (the generated C
built on the host, on the validation split), minimize the instructions of one inference on the emulated
Cortex-M4 (``qemu-m4``, QEMU ``-icount shift=0``, the first test image, as ``bench`` counts them) and
minimize the arena (``arena_bytes`` of the compiler's memory plan).

A candidate is checked before it trains, on its untrained weights: the Keras parameter count against
``max_params``, the compiler's arena against ``max_arena``, the firmware for the board (``build``: flash
and RAM against the board, flash against ``max_flash``) and, with ``max_instructions``, one inference on
the emulated board. One that breaks a budget is recorded as pruned with the reason and never trains.
After training every figure is measured again on the trained model: those are the trial's figures (a
requantized model can take a few instructions more or less than the untrained one); a trained model over
a budget stays in the study, marked infeasible, and out of the Pareto front.

Who does what:
  * the driver (``run_search``, the ``lwcnn-mcu search`` process) owns the study: it asks Optuna for a
    trial, submits it to Dask, writes the returned model files and only then tells Optuna the result, so
    a trial is never finished without its model on disk;
  * a trial (``run_trial``) runs on a Dask worker: it writes its progress (phase, pre-training figures,
    the worker's address and pid) into the same Optuna storage and returns its figures and files;
  * a worker that dies mid-trial: Dask runs the task again on another worker (up to the scheduler's
    ``allowed-failures``), else the driver marks the trial failed; a driver that dies leaves its running
    trials behind, and the next run marks them failed and queues their parameters again.

Storage (``--storage``): an SQLAlchemy URL (default ``sqlite:///<out>/search.db``; ``postgresql://`` or
``mysql://`` for a cluster), a journal file (``*.log``, ``*.jsonl``: Optuna's JournalFileStorage) or
``dask`` / ``dask+URL``: the scheduler-hosted storage of optuna-integration's DaskStorage (in memory on the
scheduler, or wrapping URL on the scheduler's machine).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lwcnn_mcu import boards, datasets
from lwcnn_mcu.errors import LwcnnError

OBJECTIVES = ("val_accuracy", "instructions", "arena_bytes")
DIRECTIONS = ("maximize", "minimize", "minimize")
MEASURE_BOARD = "qemu-m4"  # where instructions are counted
WIDTHS = (4, 6, 8, 12, 16, 20, 24, 32, 40, 48)
QUICK_WIDTHS = (4, 6, 8)
MAX_BLOCKS = 5
DRIVER_STALE_S = 180.0  # a driver that has not written its heartbeat for this long is gone


@dataclass(frozen=True)
class Budgets:
    max_params: int | None = None
    max_arena: int | None = None
    max_flash: int | None = None
    max_instructions: int | None = None

    def broken(self, figures: dict[str, Any]) -> list[str]:
        """Which budgets these figures break, each as 'what: value > limit'."""
        out = []
        for key, limit in (("keras_params", self.max_params), ("arena_bytes", self.max_arena),
                           ("flash_bytes", self.max_flash), ("instructions", self.max_instructions)):
            v = figures.get(key)
            if limit is not None and v is not None and v > limit:
                out.append(f"{key} {v:,} > {limit:,}")
        return out


@dataclass(frozen=True)
class SearchConfig:
    """What a study is: every trial of one study is trained and measured the same way."""

    dataset: str
    board: str = boards.DEFAULT_BOARD
    budgets: Budgets = field(default_factory=Budgets)
    epochs: int = 2  # stage-1 epochs of a trial (stage 2: the trial's steps of one epoch each)
    train_images: int | None = 20000  # a trial trains on the first N training images (None: all 55,000)
    quick: bool = False
    seed: int = 0

    def as_attrs(self) -> dict[str, Any]:
        d = asdict(self)
        d["budgets"] = asdict(self.budgets)
        return d


# ------------------------------------------------------------------------------------------------ storage

_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'search.db').resolve()}"


def check_storage(url: str) -> str:
    """The storage string, checked, with a relative SQLite or journal path made absolute (a Dask
    worker may run in another folder)."""
    if url == "dask" or url.startswith("dask+"):
        inner = url[5:]
        return "dask" if not inner else "dask+" + check_storage(inner)
    m = re.match(r"^([a-z0-9]+)(\+[a-z0-9_]+)?://", url)
    if m:
        if m.group(1) not in _DB_SCHEMES:
            raise LwcnnError(f"--storage {url}: not a database URL Optuna can use (sqlite:///FILE, "
                             "postgresql://..., mysql://...), a journal file (.log) or dask")
        if m.group(1) == "sqlite" and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///"):]
            if rel and rel != ":memory:":
                Path(rel).resolve().parent.mkdir(parents=True, exist_ok=True)
                return f"sqlite:///{Path(rel).resolve()}"
        if url.startswith("sqlite:////"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return url
    if url.endswith((".log", ".jsonl", ".journal")):
        p = Path(url).resolve()
        p.parent.mkdir(parents=True, exist_ok=True)
        return str(p)
    raise LwcnnError(f"--storage {url}: give a database URL (sqlite:///search.db, postgresql://user@host/db), "
                     "a journal file (search.log) or dask (the scheduler-hosted storage)")


def open_storage(url: str, client: Any = None) -> Any:
    """The Optuna storage behind a checked storage string (in the driver and in every trial)."""
    import optuna

    if url == "dask" or url.startswith("dask+"):
        try:
            from optuna_integration.dask import DaskStorage
        except ImportError:
            raise LwcnnError("--storage dask needs optuna-integration (pip install 'lwcnn-mcu[cluster]')") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one name per storage string: a second run finds the same one
            return DaskStorage(storage=url[5:] or None, name=f"lwcnn-{url}", client=client)
    if "://" in url:
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(url))


# ------------------------------------------------------------------------------------------- search space


def suggest(trial: Any, quick: bool) -> dict[str, Any]:
    """The search space (define-by-run): the training module's architecture family generalized, and the
    two stages' hyper-parameters."""
    n = trial.suggest_int("blocks", 1 if quick else 2, 2 if quick else MAX_BLOCKS)
    widths = QUICK_WIDTHS if quick else WIDTHS
    for i in range(1, n + 1):
        trial.suggest_categorical(f"b{i}_width", widths)
        trial.suggest_categorical(f"b{i}_kernel", (3,) if quick else (3, 5))
        if i > 1:
            trial.suggest_categorical(f"b{i}_separable", (False, True))
        trial.suggest_categorical(f"b{i}_pool", (True, False))
    trial.suggest_categorical("head", ("flat", "gap"))
    trial.suggest_float("lr", 1e-3, 8e-3, log=True)
    trial.suggest_categorical("batch", (64,) if quick else (64, 128, 256))
    trial.suggest_float("augment", 0.0, 1.5)
    trial.suggest_int("stage2_steps", 1 if quick else 0, 1 if quick else 3)
    trial.suggest_float("stage2_lr", 5e-5, 1e-3, log=True)
    return dict(trial.params)


def arch_of(params: dict[str, Any], input_hw: int) -> str:
    """The architecture string (training.parse_arch) of a trial's parameters. A pooling that would take
    the feature map below 1x1 is left out."""
    tokens, hw = [], input_hw
    for i in range(1, int(params["blocks"]) + 1):
        k = int(params[f"b{i}_kernel"])
        kind = "d" if params.get(f"b{i}_separable") else "c"
        tokens.append(f"{kind}{int(params[f'b{i}_width'])}" + (f"k{k}" if k != 3 else ""))
        if params[f"b{i}_pool"] and hw >= 2:
            tokens.append("p")
            hw //= 2
    return "-".join(tokens + [params["head"]])


def recipe_of(params: dict[str, Any], dataset: str) -> Any:
    from lwcnn_mcu import training

    base = training.PAPER_RECIPES[dataset]  # the two stages (trials train with the search's --epochs)
    aug = tuple(float(a) * float(params["augment"]) for a in base.aug)
    steps = int(params["stage2_steps"])
    sched = tuple((1, 1, float(params["stage2_lr"]) * 0.5 ** i) for i in range(steps))
    return training.Recipe(base.arch, base.stage1_epochs, int(params["batch"]), float(params["lr"]), sched,
                           (aug[0], aug[1], aug[2], aug[3]), base.stage2_augment)


# -------------------------------------------------------------------------------------- one trial (worker)


def measure(model: str | Path, dataset: str, board: str, x_val: Any = None, y_val: Any = None,
            instructions: bool = True) -> dict[str, Any]:
    """The exact figures of a model: compile (params, MACs, weights, arena), the firmware for the board
    (flash, RAM; LwcnnError when it does not fit), one inference on the emulated Cortex-M4 (instructions),
    and with a validation split the int8 accuracy of the generated C on it."""
    import numpy as np

    from lwcnn_mcu import builder, compiler, emulator, hostrun, reference

    c = compiler.compile_model(str(model), dataset=dataset)
    fig: dict[str, Any] = {k: c.report[k] for k in ("params", "macs", "weights_bytes", "arena_bytes")}
    tmp = Path(tempfile.mkdtemp(prefix="lwcnn-search-"))
    try:
        tfl = tmp / "model.tflite"
        tfl.write_bytes(c.tflite)  # the same bytes a fresh compile of the .keras gives: quantize once
        b = builder.build(board, str(tfl), tmp / "fw", dataset=dataset)
        fig.update(flash_bytes=b.flash_bytes, ram_bytes=b.ram_bytes, flash_limit=b.board.flash_bytes,
                   ram_limit=b.board.ram_bytes)
        if instructions:
            # the firmware's self-test runs the first test images through the same timed call as bench's
            # INFER: image 0's count is what `lwcnn-mcu bench --board qemu-m4 --samples 1` reports
            mb = b if b.board.name == MEASURE_BOARD else builder.build(MEASURE_BOARD, str(tfl), tmp / "m4",
                                                                       dataset=dataset)
            st = emulator.run_selftest(mb.board, mb.elf)
            host = hostrun.build_host(c.gen.files).run(mb.test_inputs[:1])
            if not (len(st.outputs) and (st.outputs[0] == host[0]).all()):
                raise RuntimeError(f"{model}: the emulated board's output differs from the host C")
            fig["instructions"] = int(st.instructions[0])
        if x_val is not None:
            xq = reference.quantize_input(x_val, c.graph.input.scale, c.graph.input.zero_point)
            out = hostrun.build_host(c.gen.files).run(xq.reshape(len(xq), -1))
            fig["val_accuracy"] = float(np.mean(np.argmax(out, 1) == y_val))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return fig


class _Progress:
    """A trial's progress in the shared storage (best effort: the result goes back through Dask)."""

    def __init__(self, storage: str | Any, trial_id: int) -> None:
        self.trial_id = trial_id
        try:
            self.storage = open_storage(storage) if isinstance(storage, str) else storage
        except Exception:  # noqa: BLE001 - progress is optional
            self.storage = None

    def __call__(self, **attrs: Any) -> None:
        if self.storage is None:
            return
        for k, v in attrs.items():
            try:
                self.storage.set_trial_user_attr(self.trial_id, k, v)
            except Exception:  # noqa: BLE001 - a finished or deleted trial, a storage hiccup
                return


class _Quiet:
    def print(self, *args: Any, **kwargs: Any) -> None:
        pass


def _limit_threads() -> None:
    """TensorFlow's thread pools sized to the worker's share of the machine (set before TF starts)."""
    n = os.environ.get("LWCNN_TRIAL_THREADS")
    if not n:
        return
    from lwcnn_mcu.util import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))
    except RuntimeError:  # already initialized in this worker
        pass


def run_trial(cfg: SearchConfig, number: int, trial_id: int, params: dict[str, Any],
              storage: str | Any) -> dict[str, Any]:
    """One trial on a Dask worker: check the budgets on the untrained model, train, measure. Returns
    {"state": "complete"|"pruned", "figures", "reason", "files": {name: bytes}}. `storage` is the storage
    string, or the DaskStorage object (it names the scheduler's storage)."""
    import socket

    from lwcnn_mcu import training

    _limit_threads()
    progress = _Progress(storage, trial_id)
    progress(phase="checking", host=socket.gethostname(), pid=os.getpid(), attempt_started=time.time())
    shape = datasets.INPUT_SHAPES[cfg.dataset]
    arch = arch_of(params, shape[0])
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f"lwcnn-trial-{number}-"))
    try:
        model = training.build_backbone(arch, shape, name="candidate")
        pre: dict[str, Any] = {"arch": arch, "keras_params": int(model.count_params())}
        broken = cfg.budgets.broken(pre)
        if not broken:
            model.save(tmp / "untrained.keras")
            try:
                pre.update(measure(tmp / "untrained.keras", cfg.dataset, cfg.board,
                                   instructions=cfg.budgets.max_instructions is not None))
                broken = cfg.budgets.broken(pre)
            except LwcnnError as exc:  # does not fit the board, or the compiler refuses it
                broken = [str(exc)]
        pre["check_s"] = round(time.time() - t0, 1)
        progress(phase="pruned" if broken else "training", pre_training=pre)
        if broken:
            return {"state": "pruned", "reason": "; ".join(broken), "figures": pre, "files": {}}

        out = tmp / f"trial-{number:04d}.keras"
        t1 = time.time()
        sched = ",".join(f"{g}:{e}:{lr:g}" for g, e, lr in recipe_of(params, cfg.dataset).schedule) or None
        card = training.train(cfg.dataset, out=out, seed=cfg.seed, quick=cfg.quick, epochs=cfg.epochs,
                              train_images=None if cfg.quick else cfg.train_images,
                              schedule=sched, arch=arch, recipe=recipe_of(params, cfg.dataset), console=_Quiet(),
                              verbose=0)
        t2 = time.time()
        progress(phase="measuring")
        split = training.Split.of(datasets.load(cfg.dataset), cfg.quick)
        fig = measure(out, cfg.dataset, cfg.board, split.x_val, split.y_val)
        fig.update(arch=arch, keras_params=int(card["params"]), float_val_accuracy=card.get("stage2_val_accuracy"),
                   int8_test_accuracy=card["int8_test_accuracy"], float_test_accuracy=card["float_test_accuracy"],
                   train_s=round(t2 - t1, 1), measure_s=round(time.time() - t2, 1), check_s=pre["check_s"])
        files = {p.name: p.read_bytes() for p in sorted(tmp.iterdir())
                 if p.is_file() and p.name.startswith(out.stem) and p.suffix in (".keras", ".tflite", ".json",
                                                                                  ".md", ".png")}
        progress(phase="done")
        return {"state": "complete", "figures": fig, "reason": None, "files": files}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------- the driver


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def load_or_create(study_name: str, storage: Any, cfg: SearchConfig | None) -> Any:
    """The study (created with cfg when new); a study started with another configuration is refused."""
    optuna = _optuna()
    sampler = optuna.samplers.TPESampler(seed=cfg.seed if cfg else 0, multivariate=True, group=True,
                                         n_startup_trials=8)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)} if cfg is None else None
    if cfg is None:
        if study_name not in (names or set()):
            raise LwcnnError(f"no study '{study_name}' in this storage" +
                             (f"; it has {', '.join(sorted(names))}" if names else " (it has none)"))
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    study = optuna.create_study(study_name=study_name, storage=storage, directions=list(DIRECTIONS),
                                sampler=sampler, load_if_exists=True)
    # a continued study draws new candidates: the sampler's seed moves on with the trials already there
    # (the same seed again would repeat the first run's random start-up candidates)
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.get_trials(deepcopy=False)),
                                               multivariate=True, group=True, n_startup_trials=8)
    want = cfg.as_attrs()
    have = study.user_attrs.get("config")
    if have is None:
        study.set_user_attr("config", want)
        study.set_user_attr("objectives", list(OBJECTIVES))
    elif have != want:
        diff = ", ".join(f"{k} {have.get(k)!r} (now {want[k]!r})" for k in want if have.get(k) != want[k])
        raise LwcnnError(f"study '{study_name}' was started with other settings: {diff}; continue it with the "
                         "same options or give another --study NAME")
    return study


def _recover_stale(study: Any, me: str) -> list[int]:
    """Trials left running by a driver that is gone: marked failed, their parameters queued again."""
    optuna = _optuna()
    now, out = time.time(), []
    beats = {k[len("driver:"):]: v for k, v in study.user_attrs.items() if k.startswith("driver:")}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        d = t.user_attrs.get("driver")
        if d == me or (d in beats and now - float(beats[d]) < DRIVER_STALE_S):
            continue
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study._storage.set_trial_user_attr(t._trial_id, "failed_because", "its driver stopped mid-trial")
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        out.append(t.number)
    return out


def trial_dir(out_dir: Path, study: str) -> Path:
    return out_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", study)


def _save_files(folder: Path, number: int, files: dict[str, bytes], fig: dict[str, Any], params: dict[str, Any],
                study: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"trial-{number:04d}"
    for name, data in files.items():
        if name.endswith(".json"):  # the train card, with what the search measured
            card = json.loads(data)
            card["search"] = {"study": study, "trial": number, "params": params, "figures": fig}
            data = (json.dumps(card, indent=2) + "\n").encode()
        tmp = folder / (name + ".part")
        tmp.write_bytes(data)
        tmp.replace(folder / name)
    return folder / f"{stem}.keras"


@dataclass
class Cluster:
    client: Any
    cluster: Any
    workers: int

    def close(self) -> None:
        for x in (self.client, self.cluster):
            if x is not None:
                try:
                    x.close()
                except Exception:  # noqa: BLE001 - closing down
                    pass


def start_cluster(scheduler: str | None, workers: int | None) -> Cluster:
    """A Dask client: to an existing scheduler, or a LocalCluster of `workers` processes (default: one per
    core), each with one thread (one trial at a time) and TensorFlow limited to its share of the cores."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise LwcnnError(f"cannot reach the Dask scheduler {scheduler} ({exc}); start it with `dask scheduler` "
                             "and workers with `dask worker ADDRESS --nthreads 1`") from None
        return Cluster(client, None, max(1, len(client.scheduler_info()["workers"])))
    cores = os.cpu_count() or 1
    n = workers or cores
    if n < 1:
        raise LwcnnError(f"--workers must be at least 1 (got {n})")
    threads = max(1, cores // n)
    env = {"LWCNN_TRIAL_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1"),  # training.configure_threads
           "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads)}
    with dask.config.set({"distributed.scheduler.allowed-failures": 2,
                          "distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, env=env)
    return Cluster(Client(cluster), cluster, n)


def run_search(cfg: SearchConfig, *, trials: int, study_name: str | None = None, storage: str | None = None,
               out_dir: Path = Path("search"), scheduler: str | None = None, workers: int | None = None,
               client: Any = None, progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Add `trials` trials to the study (created or continued), `workers` at a time, and report."""
    datasets.check_name(cfg.dataset)
    boards.get(cfg.board)
    if trials < 1:
        raise LwcnnError(f"--trials must be at least 1 (got {trials})")
    if cfg.epochs < 1:
        raise LwcnnError(f"--epochs must be at least 1 (got {cfg.epochs})")
    _optuna()
    name = study_name or f"{cfg.dataset}-{boards.get(cfg.board).name}" + ("-quick" if cfg.quick else "")
    url = check_storage(storage or default_storage(out_dir))
    own = None
    if client is None:
        own = start_cluster(scheduler, workers)
        client, n_workers = own.client, own.workers
    else:
        n_workers = max(1, len(client.scheduler_info()["workers"]))
    try:
        st = open_storage(url, client)
        study = load_or_create(name, st, cfg)
        me = uuid.uuid4().hex[:12]
        study.set_user_attr(f"driver:{me}", time.time())
        retried = _recover_stale(study, me)
        folder = trial_dir(out_dir, name)
        _run_loop(cfg, study, client, url if not url.startswith("dask") else st, folder, name, me, trials,
                  n_workers, progress)
        report = summarize(study, url, out_dir)
        report.update(trials_this_run=trials, workers=n_workers, requeued_from_a_stopped_run=retried)
        return report
    finally:
        if own is not None:
            own.close()


def _run_loop(cfg: SearchConfig, study: Any, client: Any, url: str | Any, folder: Path, name: str, me: str,
              trials: int, n_workers: int, progress: Callable[[int, int, str], None] | None) -> None:
    from distributed import as_completed

    optuna = _optuna()
    TS = optuna.trial.TrialState
    submitted = done = 0
    running: dict[Any, Any] = {}
    ac = as_completed()
    stop = threading.Event()

    def beat() -> None:  # the driver's heartbeat: other drivers leave its running trials alone
        while not stop.wait(30):
            try:
                study.set_user_attr(f"driver:{me}", time.time())
            except Exception:  # noqa: BLE001 - a storage hiccup: try again next time
                pass

    threading.Thread(target=beat, daemon=True, name="lwcnn-search-heartbeat").start()

    def submit() -> None:
        nonlocal submitted
        t = study.ask()
        study._storage.set_trial_user_attr(t._trial_id, "driver", me)
        params = suggest(t, cfg.quick)
        fut = client.submit(run_trial, cfg, t.number, t._trial_id, params, url, pure=False,
                            key=f"lwcnn-trial-{name}-{t.number}-{uuid.uuid4().hex[:6]}")
        running[fut] = t
        ac.add(fut)
        submitted += 1

    while submitted < min(trials, n_workers):
        submit()
    if progress:
        progress(0, trials, "")
    for fut in ac:
        t = running.pop(fut)
        desc = ""
        try:
            res = fut.result()
        except Exception as exc:  # noqa: BLE001 - the trial failed (its code, or its worker died too often)
            study._storage.set_trial_user_attr(t._trial_id, "failed_because", f"{type(exc).__name__}: {exc}"[:500])
            study.tell(t, state=TS.FAIL)
            desc = f"trial {t.number} failed: {type(exc).__name__}"
        else:
            fig = res["figures"]
            study._storage.set_trial_user_attr(t._trial_id, "figures", fig)  # one write: SQLite syncs each
            if res["state"] == "pruned":
                study._storage.set_trial_user_attr(t._trial_id, "pruned_because", res["reason"])
                study.tell(t, state=TS.PRUNED)
                desc = f"trial {t.number} pruned ({res['reason'][:60]})"
            else:
                path = _save_files(folder, t.number, res["files"], fig, t.params, name)
                broken = cfg.budgets.broken(fig)
                study._storage.set_trial_user_attr(t._trial_id, "model", str(path.resolve()))
                study._storage.set_trial_user_attr(t._trial_id, "over_budget", float(len(broken)))
                t.set_constraint("budgets", float(len(broken)))  # the sampler learns what is feasible
                if broken:
                    study._storage.set_trial_user_attr(t._trial_id, "over_budget_after_training", broken)
                study.tell(t, [fig[k] for k in OBJECTIVES])
                desc = f"trial {t.number}: int8 val {fig['val_accuracy']:.4f}, {fig['instructions']:,} instr"
        done += 1
        if progress:
            progress(done, trials, desc)
        if submitted < trials:
            submit()
    stop.set()


# ------------------------------------------------------------------------------------------------ report


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows no other row dominates (higher or equal accuracy, fewer or equal instructions and arena, one
    strictly better)."""
    def key(r: dict[str, Any]) -> tuple[float, float, float]:
        return (-r["val_accuracy"], r["instructions"], r["arena_bytes"])

    front = []
    for r in rows:
        a = key(r)
        if not any(all(x <= y for x, y in zip(key(o), a, strict=True)) and key(o) != a for o in rows):
            front.append(r)
    return sorted(front, key=lambda r: (r["instructions"], -r["val_accuracy"]))


def _row(t: Any) -> dict[str, Any]:
    u = {**t.user_attrs, **t.user_attrs.get("figures", {})}
    return {"trial": t.number, "model": u.get("model"), "arch": u.get("arch"), "params": u.get("params"),
            "keras_params": u.get("keras_params"), "macs": u.get("macs"), "arena_bytes": u.get("arena_bytes"),
            "flash_bytes": u.get("flash_bytes"), "instructions": u.get("instructions"),
            "val_accuracy": u.get("val_accuracy"), "int8_test_accuracy": u.get("int8_test_accuracy"),
            "train_s": u.get("train_s")}


def summarize(study: Any, url: str, out_dir: Path) -> dict[str, Any]:
    optuna = _optuna()
    TS = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TS.COMPLETE]
    feasible = [_row(t) for t in complete if not t.user_attrs.get("over_budget")]
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (TS.COMPLETE, TS.PRUNED, TS.FAIL,
                                                                          TS.RUNNING, TS.WAITING)}
    return {"study": study.study_name, "storage": url, "config": study.user_attrs.get("config"),
            "trials_done": counts["complete"] + counts["pruned"], "trials": counts,
            "pareto": pareto_front(feasible), "all_feasible": sorted(feasible, key=lambda r: r["trial"]),
            "pruned": [{"trial": t.number, "reason": t.user_attrs.get("pruned_because")}
                       for t in trials if t.state == TS.PRUNED],
            "folder": str(trial_dir(out_dir, study.study_name))}


def show(study_name: str, storage: str | None = None, out_dir: Path = Path("search"),
         scheduler: str | None = None) -> dict[str, Any]:
    url = check_storage(storage or default_storage(out_dir))
    if "://" in url and url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise LwcnnError(f"no study storage at {url}; give the --storage the search used")
    cl = None
    if url.startswith("dask"):
        if not scheduler:
            raise LwcnnError("--storage dask lives on a Dask scheduler: give --scheduler tcp://HOST:8786")
        cl = start_cluster(scheduler, None)
    try:
        st = open_storage(url, cl.client if cl else None)
        return summarize(load_or_create(study_name, st, None), url, out_dir)
    finally:
        if cl is not None:
            cl.close()


def plot(report: dict[str, Any], path: Path, reference: dict[str, Any] | None = None) -> None:
    """Accuracy against instructions and against arena: every feasible trial, the Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, front = report["all_feasible"], report["pareto"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "instructions", "instructions per inference (emulated Cortex-M4)"),
                           (axes[1], "arena_bytes", "arena (bytes of RAM)")):
        ax.scatter([r[key] for r in rows], [100 * r["val_accuracy"] for r in rows], s=18, c="0.6",
                   label="trials")
        fr = sorted(front, key=lambda r: r[key])
        ax.scatter([r[key] for r in fr], [100 * r["val_accuracy"] for r in fr], s=36, c="tab:red",
                   label="Pareto front")
        for r in fr:
            ax.annotate(str(r["trial"]), (r[key], 100 * r["val_accuracy"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        if reference and reference.get(key) is not None and reference.get("val_accuracy") is not None:
            ax.scatter([reference[key]], [100 * reference["val_accuracy"]], marker="*", s=120, c="tab:blue",
                       label=f"shipped {reference['name']}")
        if rows or (reference and reference.get(key)):
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "no trained trial within the budgets yet", ha="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.set_ylabel("int8 validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"search {report['study']}: {report['trials_done']} trials, {len(front)} on the Pareto front")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def shipped_reference(dataset: str, board: str) -> dict[str, Any] | None:
    """The shipped model of the dataset measured the same way (it trained much longer than a trial)."""
    from lwcnn_mcu import models, training

    if dataset not in models.SHIPPED or not models.shipped_path(dataset).is_file():
        return None
    split = training.Split.of(datasets.load(dataset))
    fig = measure(dataset, dataset, board, split.x_val, split.y_val)
    fig["name"] = dataset
    fig["int8_test_accuracy"] = models.card(dataset).get("int8_test_accuracy")
    return fig


def fmt_count(v: Any) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.0f}" if isinstance(v, float) and \
        not math.isnan(v) else str(v)


# ---------------------------------------------------------------------------------------------- the CLI


def cli(*, dataset: str | None, board: str, budgets: Budgets, trials: int | None, epochs: int, quick: bool,
        train_images: int | None,
        study: str | None, storage: str | None, scheduler: str | None, workers: int | None, out_dir: Path,
        show_study: str | None, as_json: bool, console: Any) -> dict[str, Any]:
    """`lwcnn-mcu search`: run (or with show_study, report) a study; print the Pareto table, write the plot."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if scheduler and workers:
        raise LwcnnError("give either --scheduler or --workers, not both")
    if show_study:
        report = show(show_study, storage, out_dir, scheduler)
    else:
        if dataset is None:
            raise LwcnnError("give --dataset D (or --show STUDY for a finished study)")
        if trials is None:
            raise LwcnnError("give --trials N: how many trials to add to the study")
        cfg = SearchConfig(dataset=datasets.check_name(dataset), board=boards.get(board).name, budgets=budgets,
                           epochs=1 if quick and epochs == DEFAULT_EPOCHS else epochs, quick=quick,
                           train_images=None if quick or not train_images else train_images)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as prog:
            task = prog.add_task("starting the Dask workers", total=trials)

            def step(done: int, total: int, desc: str) -> None:
                prog.update(task, completed=done, description=desc or "trials")

            report = run_search(cfg, trials=trials, study_name=study, storage=storage, out_dir=out_dir,
                                scheduler=scheduler, workers=workers, progress=step)
    cfg_d = report.get("config") or {}
    ref = None
    if not quick and cfg_d.get("dataset") and not cfg_d.get("quick"):
        try:
            ref = shipped_reference(cfg_d["dataset"], cfg_d.get("board") or boards.DEFAULT_BOARD)
        except Exception as exc:  # noqa: BLE001 - the reference point is a courtesy
            console.print(f"[dim]shipped model not measured: {type(exc).__name__}: {exc}[/dim]")
    report["shipped"] = ref
    png = Path(report["folder"]) / "pareto.png"
    plot(report, png, ref)
    report["plot"] = str(png)
    if not as_json:
        print_report(report, console)
    return report


DEFAULT_EPOCHS = SearchConfig.__dataclass_fields__["epochs"].default


def print_report(r: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    c = r.get("config") or {}
    b = c.get("budgets") or {}
    lim = ", ".join(f"{k.replace('max_', '')} <= {v:,}" for k, v in b.items() if v is not None) or "none"
    t = Table(title=f"Pareto front of study {r['study']} ({c.get('dataset')}, board {c.get('board')}, budgets: {lim})")
    cols = ("trial", "architecture", "params", "MACs", "arena B", "flash B", "instructions", "int8 val acc")
    for col in cols:
        t.add_column(col, justify="left" if col == "architecture" else "right", no_wrap=col != "architecture",
                     min_width=14 if col == "architecture" else None)
    for x in r["pareto"]:
        t.add_row(str(x["trial"]), str(x["arch"]), fmt_count(x["params"]), fmt_count(x["macs"]),
                  fmt_count(x["arena_bytes"]), fmt_count(x["flash_bytes"]), fmt_count(x["instructions"]),
                  f"{100 * x['val_accuracy']:.2f}%")
    s = r.get("shipped")
    if s:
        t.add_row("shipped", s["name"], fmt_count(s["params"]), fmt_count(s["macs"]), fmt_count(s["arena_bytes"]),
                  fmt_count(s["flash_bytes"]), fmt_count(s["instructions"]), f"{100 * s['val_accuracy']:.2f}%",
                  style="dim")
    console.print(t)
    for x in r["pareto"]:  # the architecture in full (a narrow terminal squeezes the table's column)
        console.print(f"  trial {x['trial']}: --arch {x['arch']}  ({x['model']})", soft_wrap=True)
    n = r["trials"]
    console.print(f"{r['trials_done']} trials done ({n['complete']} trained, {n['pruned']} pruned before training, "
                  f"{n['fail']} failed); storage {r['storage']}")
    console.print(f"models and cards: {r['folder']}/trial-NNNN.*; plot {r.get('plot')}")
    if s:
        console.print("[dim]shipped: the default recipe's full training; trials train for the search's --epochs[/dim]")

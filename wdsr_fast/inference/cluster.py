"""``upscale_on_ray``: the batch of ``wdsr-fast upscale`` on a Ray cluster (``--ray [ADDRESS]``), the same files out.

Built on Ray core actors (``ray.util.ActorPool`` over actors with ``max_restarts``/``max_task_retries``), not Ray
Data: every input and output is a file on storage all nodes see, read and written by the worker itself through
``upscale_file`` (the function of the single-machine command, so names, formats, bit depth, alpha, metadata and
atomic writes are the same); only job descriptions and one log line per file travel. Ray Data's blocks, Arrow
conversion and streaming executor would carry nothing here and cost start-up time (importing pyarrow, planning),
which is most of the overhead on a small batch.

- The driver lists the inputs and plans the outputs exactly as the plain command (``collect_images``,
  ``earlier_outputs``, ``plan``), skips the outputs that exist already (unless ``overwrite``), and checks the
  checkpoint once; its weights go to the object store once (``ray.put``) and each actor builds its model from
  them once.
- Workers: one actor per GPU where the cluster has GPUs (float16 with ``half``, CUDA graphs), else CPU actors of
  ``threads`` CPUs each with torch's threads set to that. Each call takes a few small files (fewer when they are
  large, which the Upscaler tiles as on one machine).
- Nothing lost: an actor whose process or node dies is restarted by Ray (``max_restarts=-1``) and its call run
  again (``max_task_retries``); outputs are written atomically, so a file is complete or absent, and an output
  that the dead attempt completed is reported as existing. A file whose call kills its worker every time is
  failed with the reason after ``task_retries`` tries, like a corrupt file; every other file is done.
- Progress over the completed calls (files/s, images/s) and a summary per worker (node, process, device).
"""
from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..io.images import IMAGE_SUFFIXES, ImageError
from .files import (
    Job,
    OutputExists,
    OutputFolderError,
    backend_problem,
    check_output_folder,
    collect_images,
    earlier_outputs,
    failure_line,
    pixel_budget,
    plan,
    suffix_problem,
    tile_pad_warning,
    upscale_file,
)
from .upscaler import UpscaleError, Upscaler

RAY_MISSING = "--ray needs Ray, which is not installed: pip install 'wdsr-fast[ray]'"
DIE_ONCE_ENV = "WDSR_FAST_RAY_DIE_ONCE"  # tests: PATH[:N]; workers exit mid-call until PATH records N deaths
BATCH_FILES = 16  # most files per actor call
BATCH_BYTES = 8 << 20  # a call takes files until their inputs reach this size on disk
CALLS_PER_WORKER = 4  # at least this many calls per actor, so that the last ones end together
MAX_GRAPHS = 8  # CUDA graphs kept per GPU actor (one per input shape): photos of many sizes would fill the GPU


class ClusterError(RuntimeError):
    """The run cannot start (Ray missing, bad arguments, a worker that cannot build its model); ``status``: the
    exit status the command gives (2: a usage error, 1: otherwise)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def import_ray():
    """The ``ray`` module, or ``ClusterError`` with the one line that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(RAY_MISSING, status=2) from None
    return ray


@dataclass
class Settings:
    """What each worker needs besides the weights."""
    device: str  # "cpu" or "cuda"
    half: bool
    tile: object
    tile_pad: int | None
    backend: str
    alpha: str
    threads: int
    quality: int
    replace: bool
    max_pixels: int
    weights_name: str
    cwd: str | None = None  # the driver's working folder, where relative paths start (None: all are absolute)


@dataclass
class Outcome:
    """One file's result: ``status`` is done, skipped or failed; ``line`` what the plain command prints for it."""
    source: str
    status: str
    line: str
    worker: str = ""
    images: int = 0
    seconds: float = 0.0


@dataclass
class WorkerTotals:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    images: int = 0
    seconds: float = 0.0

    def line(self, name: str) -> str:
        rate = f", {self.images / self.seconds:.2f} images/s busy" if self.seconds > 0 and self.images else ""
        return (f"worker {name}: {self.done} done, {self.skipped} skipped, {self.failed} failed"
                f" in {self.seconds:.1f} s{rate}")


@dataclass
class Report:
    """The run's results: every file's outcome, per worker totals, the scale and the output folder."""
    outcomes: list[Outcome]
    scale: int
    out: Path
    workers: dict[str, WorkerTotals] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def add(self, outcome: Outcome) -> None:
        totals = self.workers.setdefault(outcome.worker or "(lost)", WorkerTotals())
        setattr(totals, outcome.status, getattr(totals, outcome.status) + 1)
        totals.images += outcome.images
        totals.seconds += outcome.seconds

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary(self) -> str:
        """The plain command's summary line."""
        done, skipped, failed = self.count("done"), self.count("skipped"), self.count("failed")
        return (f"{done} of {len(self.outcomes)} images upscaled x{self.scale} into {self.out}"
                + (f"; {skipped} skipped (output exists)" if skipped else "")
                + (f"; {failed} failed" if failed else ""))

    @property
    def status(self) -> int:
        return 1 if self.failed else 0


# -- one job, on a worker ---------------------------------------------------------------------------------

def job_kind(job: Job) -> str:
    return getattr(job, "kind", "image")


# How each kind of job is run: (upscaler, job, quality, replace) -> the log line. Videos: one line here,
# {"video": video.upscale_video_file}, once inference/video.py is merged (one video a task).
RUNNERS: dict[str, Callable[..., str]] = {"image": upscale_file}


def run_job(upscaler: Upscaler, job: Job, quality: int, replace: bool) -> Outcome:
    """One job as the plain command runs it, its exceptions turned into the line it prints."""
    source = str(job.source)
    if job.problem is not None:
        return Outcome(source, "failed", f"error: {job.source}: {job.problem}")
    try:
        return Outcome(source, "done", RUNNERS[job_kind(job)](upscaler, job, quality, replace), images=1)
    except OutputExists as exc:
        return Outcome(source, "skipped", f"skipped {job.source}: {exc} (--overwrite replaces it)")
    except FileExistsError as exc:  # appeared meanwhile (another run's, or a dead attempt's), and kept
        return Outcome(source, "skipped", f"skipped {job.source}: {exc}")
    except (ImageError, UpscaleError) as exc:
        return Outcome(source, "failed", f"error: {exc}")
    except (MemoryError, ValueError, RuntimeError, OSError) as exc:
        return Outcome(source, "failed", f"error: {failure_line(job.source, exc)}")


class UpscaleWorker:
    """A Ray actor: the model built once from the shipped weights, then files upscaled call after call."""

    def __init__(self, shipped: list, settings: Settings):
        import ray

        from .fast_wdsr import FastWDSR

        self.settings = settings
        self.problem: str | None = None
        device = settings.device
        if device == "cuda" and torch.cuda.is_available():
            device = f"cuda:{torch.cuda.current_device()}"  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
        else:
            torch.set_num_threads(settings.threads)
        self.name = f"{socket.gethostname()} pid {os.getpid()} ({device}" + (
            f", {settings.threads} threads)" if device == "cpu" else ")")
        if settings.cwd is not None:
            if not os.path.isdir(settings.cwd):
                self.problem = (f"the working folder of the command, {settings.cwd}, is not on this node: give the "
                                f"inputs and -o as absolute paths on storage every node sees")
                return
            os.chdir(settings.cwd)  # this process is the actor's own: relative paths mean what they mean there
        try:
            config, state = ray.get(shipped[0])  # a reference in a list: fetched here, not held by Ray as an argument
            model = FastWDSR.from_config(config, backend=settings.backend, cuda_graphs=device.startswith("cuda"))
            model.load_state_dict(state)
            self.model = model
            self.upscaler = Upscaler(weights=model.eval(), device=device, half=settings.half, tile=settings.tile,
                                     tile_pad=settings.tile_pad, backend=settings.backend, alpha=settings.alpha)
            self.upscaler.weights = settings.weights_name  # named in its errors as on one machine
            if (reason := backend_problem(self.upscaler, settings.backend)) is not None:
                self.problem = f"--backend {settings.backend} cannot run on {self.upscaler.device}: {reason}"
        except (ValueError, RuntimeError) as exc:
            self.problem = str(exc).splitlines()[0]

    def ready(self) -> tuple[str, str | None]:
        return self.name, self.problem

    def run(self, items: Sequence[tuple[int, Job]]) -> list[tuple[int, Outcome]]:
        """(index, job) pairs -> (index, outcome) pairs."""
        outcomes = []
        with pixel_budget(self.settings.max_pixels):
            for position, (index, job) in enumerate(items):
                if position == len(items) // 2:
                    _die_once_for_tests()
                start = time.perf_counter()
                outcome = run_job(self.upscaler, job, self.settings.quality, self.settings.replace)
                outcome.worker, outcome.seconds = self.name, time.perf_counter() - start
                outcomes.append((index, outcome))
                if len(self.model._graphs) > MAX_GRAPHS:  # repeated shapes (one camera, tiles) keep theirs
                    self.model.refold()
        return outcomes


def _die_once_for_tests() -> None:
    """With ``WDSR_FAST_RAY_DIE_ONCE=PATH[:N]`` set for the workers (N: 1 unless given) and fewer than N deaths
    recorded in the file PATH: record one more, and end this process at once, halfway through its call (a worker
    killed mid-run, as by a lost node or the OOM killer)."""
    value = os.environ.get(DIE_ONCE_ENV)
    if not value:
        return
    marker, _, times = value.rpartition(":") if value.rpartition(":")[2].isdigit() else (value, "", "1")
    path = Path(marker)
    deaths = len(path.read_text()) if path.exists() else 0
    if deaths < int(times):
        with open(path, "a") as f:
            f.write("x")
        os._exit(1)


# -- the driver ---------------------------------------------------------------------------------------------

def batches(jobs: list[tuple[int, Job]], workers: int) -> list[list[tuple[int, Job]]]:
    """Jobs grouped into calls: a few small files each (at most ``BATCH_FILES`` and about ``BATCH_BYTES`` of input),
    and at least ``CALLS_PER_WORKER`` calls per worker when there are enough files."""
    most = max(1, min(BATCH_FILES, math.ceil(len(jobs) / (workers * CALLS_PER_WORKER))))
    groups: list[list[tuple[int, Job]]] = []
    current: list[tuple[int, Job]] = []
    size = 0
    for item in jobs:
        try:
            size += os.stat(item[1].source).st_size
        except OSError:
            pass
        current.append(item)
        if len(current) >= most or size >= BATCH_BYTES:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _connect(ray, address: str | None, runtime_env: dict | None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://...``) or start a local Ray (None); True when this call
    started it (and so ends it). A Ray already initialised in this process is used as it is."""
    if ray.is_initialized():
        return False
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False,
                    "runtime_env": runtime_env}
    saved = os.environ.get("PYTHONPATH")
    if address is None:  # local workers import this wdsr_fast: through the environment the local Ray inherits
        package_root = str(Path(__file__).resolve().parents[2])  # (a runtime_env would cost a worker start-up)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, saved) if p)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return True


def _resources(ray) -> tuple[int, int, int]:
    """(GPUs in the cluster, CPUs in the cluster, CPUs of its smallest node)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = sum(int(n.get("GPU", 0)) for n in nodes)
    cpus = sum(int(n.get("CPU", 0)) for n in nodes)
    smallest = min((int(n.get("CPU", 0)) for n in nodes if n.get("CPU")), default=1)
    return gpus, cpus, smallest


def upscale_on_ray(inputs: Sequence[os.PathLike | str], out: os.PathLike | str, *, address: str | None = None,
                   weights=None, scale: int | None = None, ext: str = "png", suffix: str | None = None,
                   quality: int = 95, recursive: bool = False, overwrite: bool = False, tile="auto",
                   tile_pad: int | None = None, backend: str = "auto", alpha: str = "bicubic",
                   device: str | None = None, half: bool = False, threads: int | None = None,
                   workers: int | None = None, max_pixels: int = Image.MAX_IMAGE_PIXELS or 0,
                   task_retries: int = 3, runtime_env: dict | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> Report:
    """Upscale image files (or folders of them) into ``out`` on a Ray cluster: the files of
    ``wdsr-fast upscale INPUTS -o OUT``, byte for byte. The inputs and ``out`` must be on storage every node sees,
    and wdsr_fast installed on every node.

    address: None starts a local Ray (and ends it after); ``"auto"`` or ``"ray://HOST:PORT"`` joins a cluster.
    device: ``"cuda"`` (one actor per GPU), ``"cpu"`` (actors of ``threads`` CPUs), or None: cuda where the
    cluster has GPUs. workers: how many actors (default: one per GPU, or the cluster's CPUs / ``threads``).
    task_retries: how often a call is run again after its worker died (at least 1). log: gets each file's line (default:
    stderr, above the progress bar). Raises ``ClusterError`` when the run cannot start; a file that fails is in
    the report (``report.failed``) and the others are done.
    """
    ray = import_ray()
    started = time.perf_counter()
    out = Path(out)
    if log is None:
        from tqdm import tqdm

        def log(line: str) -> None:
            tqdm.write(line, file=sys.stderr)

    if suffix is not None and (problem := suffix_problem(suffix)) is not None:
        raise ClusterError(f"--suffix {suffix!r} {problem}", status=2)
    if task_retries < 1:  # with none, the calls sent to an actor while Ray restarts it fail as well
        raise ClusterError(f"task_retries must be at least 1, got {task_retries}", status=2)
    if device not in (None, "cpu", "cuda"):
        raise ClusterError(f"--device {device!r} with --ray: cpu or cuda (each actor gets its own GPU)", status=2)
    files = collect_images([Path(p) for p in inputs], recursive, out)
    if all(item.problem is not None for item in files):
        for item in files:
            log(f"error: {item.path}: {item.problem}")
        raise ClusterError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in the inputs")
    try:
        check_output_folder(out)
    except OutputFolderError as exc:
        raise ClusterError(str(exc)) from None
    try:  # the checkpoint, scale, tile and alpha checked here as on one machine, before any worker starts
        checked = Upscaler(weights=weights, scale=scale, device="cpu", tile=tile, tile_pad=tile_pad,
                           backend="torch", alpha=alpha)
    except (ValueError, RuntimeError) as exc:
        raise ClusterError(str(exc)) from None
    if (warning := tile_pad_warning(checked)) is not None:
        log(f"warning: --tile-pad {tile_pad}: {warning}")
    suffix = f"_x{checked.scale}" if suffix is None else suffix
    files, left_out = earlier_outputs(files, out, ext, suffix)
    if left_out:
        names = ", ".join(str(item.path) for item in left_out[:3]) + (", ..." if len(left_out) > 3 else "")
        log(f"note: left out {len(left_out)} file{'s' if len(left_out) > 1 else ''} of the output folder named "
            f"as outputs of this run (earlier outputs, not inputs): {names}")
    jobs = plan(files, out, ext, suffix)
    outcomes: dict[int, Outcome] = {}
    todo: list[tuple[int, Job]] = []
    for index, job in enumerate(jobs):  # what needs no worker: known problems, outputs that exist
        if job.problem is None and not overwrite and os.path.lexists(job.target):
            outcomes[index] = Outcome(str(job.source), "skipped",
                                      f"skipped {job.source}: {job.target} exists (--overwrite replaces it)")
        elif job.problem is not None:
            outcomes[index] = run_job(checked, job, quality, overwrite)
        else:
            todo.append((index, job))
    for index in sorted(outcomes):
        log(outcomes[index].line)
    report = Report([], checked.scale, out)
    if todo:
        _run_on_cluster(ray, todo, outcomes, report, checked, address, device, half, tile, tile_pad, backend, alpha,
                        threads, workers, quality, overwrite, max_pixels, task_retries, runtime_env, progress, log)
    report.outcomes = [outcomes[i] for i in range(len(jobs))]
    report.seconds = time.perf_counter() - started
    return report


def _run_on_cluster(ray, todo, outcomes, report, checked, address, device, half, tile, tile_pad, backend, alpha,
                    threads, workers, quality, overwrite, max_pixels, task_retries, runtime_env, progress, log):
    from ray.util import ActorPool
    from tqdm import tqdm

    ours = _connect(ray, address, runtime_env)
    actors: list = []
    try:
        gpus, cpus, smallest = _resources(ray)
        if device is None:
            device = "cuda" if gpus else "cpu"
        if half and device == "cpu":
            raise ClusterError("half precision needs GPU workers (the cluster has no GPU, or --device cpu)", 2)
        threads = threads or max(1, min(4, smallest))
        if device == "cuda":
            if not gpus:
                raise ClusterError("--device cuda: the Ray cluster has no GPU", status=2)
            count, options = workers or gpus, {"num_gpus": 1, "num_cpus": 1}
        else:
            count, options = workers or max(1, cpus // threads), {"num_cpus": threads}
        count = max(1, min(count, len(todo)))
        options.update(max_restarts=-1, max_task_retries=task_retries)
        if runtime_env and not ours:  # a Ray started before: the actors get it
            options["runtime_env"] = runtime_env
        relative = any(not job.source.is_absolute() or not job.target.is_absolute() for _, job in todo)
        settings = Settings(device, half, tile, tile_pad, backend, alpha, threads, quality, overwrite, max_pixels,
                            checked.weights, os.getcwd() if relative else None)
        shipped = ray.put((checked.config, checked.model.state_dict()))  # once, for every actor
        actor_class = ray.remote(UpscaleWorker)
        actors += [actor_class.options(**options).remote([shipped], settings) for _ in range(count)]
        for name, problem in ray.get([a.ready.remote() for a in actors]):
            if problem is not None:
                raise ClusterError(f"worker {name} cannot upscale: {problem}", status=2)
        pool = ActorPool(actors)
        for group in batches(todo, count):
            pool.submit(lambda actor, items: actor.run.remote(items), group)
        lost: list[str] = []
        bar = tqdm(total=len(todo), desc="upscaling", unit="file", file=sys.stderr, disable=not progress)
        images, started = 0, time.perf_counter()
        with bar:
            while pool.has_next():
                try:
                    results = pool.get_next_unordered()
                except ray.exceptions.RayError as exc:  # a call whose worker died on every try: named below
                    lost.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    continue
                for index, outcome in results:
                    outcomes[index] = outcome
                    images += outcome.images
                    log(outcome.line)
                    report.add(outcome)
                bar.update(len(results))
                bar.set_postfix_str(f"{images / max(time.perf_counter() - started, 1e-9):.2f} images/s")
            reason = lost[-1] if lost else "no result"
            for index, job in todo:
                if index not in outcomes:
                    outcomes[index] = Outcome(str(job.source), "failed", f"error: {job.source}: its worker died on "
                                              f"every try ({task_retries + 1}): {reason}")
                    log(outcomes[index].line)
                    report.add(outcomes[index])
                    bar.update(1)
    finally:
        for actor in actors:
            ray.kill(actor)  # their CPUs and GPUs free at once for what runs next on this Ray
        if ours:
            ray.shutdown()

"""``upscale_on_ray``: the batch of ``wdsr-fast upscale`` on a Ray cluster (``--ray [ADDRESS]``), the same files out.

Built on Ray core actors (``ray.util.ActorPool`` over actors with ``max_restarts``/``max_task_retries``), not Ray
Data: every input and output is a file on storage all nodes see, read and written by the worker itself through
``run_job`` with ``upscale_file`` or ``upscale_video_job`` (the functions of the single-machine command, so names,
formats, bit depth, alpha, metadata, video streams and atomic writes are the same); only job descriptions and one
log line per file travel. Ray Data's blocks, Arrow conversion and streaming executor would carry nothing here and
cost start-up time (importing pyarrow, planning), which is most of the overhead on a small batch.

- The driver lists the inputs and plans the outputs exactly as the plain command (``collect_images``,
  ``plan_upscale``), skips the outputs that exist already (unless ``overwrite``), and checks the checkpoint
  once; its weights go to the object store once (``ray.put``) and each actor builds its model from them once.
- Workers (``plan_actors``): one actor per GPU where the cluster has GPUs (float16 with ``half``, CUDA graphs),
  else CPU actors of ``threads`` CPUs each, as many as fit on each node, with torch's threads set to their CPUs.
  Each call takes one video, or a few small images (fewer when they are large, which the Upscaler tiles as on one
  machine); the videos go first, the largest first, as the longest calls.
- Nothing lost: an actor whose process or node dies is restarted by Ray (``max_restarts=-1``) and its call run
  again (``max_task_retries``); outputs are written atomically, so a file is complete or absent, and an output
  that the dead attempt completed is reported as existing. A file whose call kills its worker every time is
  failed with the reason after ``task_retries`` tries, like a corrupt file; every other file is done.
- Progress over the completed calls (files/s, images/s) and a summary per worker (node, process, device).
"""
from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..io.video import EncodeOptions, VideoError, require_av
from .files import (
    Job,
    Outcome,
    OutputExists,
    OutputFolderError,
    backend_problem,
    check_output_folder,
    collect_images,
    left_out_note,
    pixel_budget,
    run_job,
    suffix_problem,
    summary,
    tile_pad_warning,
    upscale_file,
)
from .upscaler import Upscaler
from .video import NOTHING_FOUND, UPSCALE_SUFFIXES, frames_per_batch, plan_upscale, upscale_video_job

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
    threads: int  # torch's threads: the actor's CPUs
    quality: int
    replace: bool
    max_pixels: int
    weights_name: str
    video: EncodeOptions  # codec, crf and preset of the videos (their container: each job's)
    batch: int | None  # video frames through the network together (None: the device's default)
    cwd: str | None = None  # the driver's working folder, where relative paths start (None: all are absolute)


@dataclass
class WorkerTotals:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0  # busy, on every file it had
    images: int = 0  # done, and the seconds they took
    image_seconds: float = 0.0
    frames: int = 0  # of the videos done, and the seconds they took
    video_seconds: float = 0.0

    def line(self, name: str) -> str:
        rates = [f"{count / seconds:.3g} {unit}/s" for count, seconds, unit in (
            (self.images, self.image_seconds, "images"), (self.frames, self.video_seconds, "video frames"))
            if count and seconds > 0]
        return (f"worker {name}: {self.done} done, {self.skipped} skipped, {self.failed} failed"
                f" in {self.seconds:.1f} s busy" + "".join(f", {rate}" for rate in rates))


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
        totals.seconds += outcome.seconds
        if outcome.status == "done" and outcome.kind == "image":
            totals.images += 1
            totals.image_seconds += outcome.seconds
        elif outcome.status == "done":
            totals.frames += outcome.frames
            totals.video_seconds += outcome.seconds

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary(self) -> str:
        """The plain command's summary lines: of the images (unless there are only videos), of the videos."""
        kinds = {o.kind for o in self.outcomes}
        if kinds == {"video"}:
            return summary(self.outcomes, "video", self.scale, self.out)
        lines = [summary(self.outcomes, "image", self.scale, self.out)]
        if "video" in kinds:
            lines.append(summary(self.outcomes, "video", self.scale, self.out))
        return "\n".join(lines)

    @property
    def status(self) -> int:
        return 1 if self.failed else 0


# -- one job, on a worker ---------------------------------------------------------------------------------

def _image(upscaler: Upscaler, job: Job, settings: Settings) -> tuple[str, int]:
    return upscale_file(upscaler, job, settings.quality, settings.replace), 0


def _video(upscaler: Upscaler, job: Job, settings: Settings) -> tuple[str, int]:
    options = dataclasses.replace(settings.video, container=job.fmt)
    return upscale_video_job(upscaler, job, options, frames_per_batch(upscaler, settings.batch), settings.replace)


# How each kind of job (``Job.kind``) is run on a worker: (upscaler, job, settings) -> (its line, its frames).
RUNNERS: dict[str, Callable[[Upscaler, Job, Settings], tuple[str, int]]] = {"image": _image, "video": _video}


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
        torch.set_num_threads(settings.threads)  # its share of the node's CPUs
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
                outcome = run_job(job, lambda job: RUNNERS[job.kind](self.upscaler, job, self.settings))
                outcome.worker = self.name
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

def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def batches(jobs: list[tuple[int, Job]], workers: int) -> list[list[tuple[int, Job]]]:
    """Jobs grouped into calls: one video a call, the largest first (the longest calls start first, so that
    the last ones end together); then a few small images a call (at most ``BATCH_FILES`` and about ``BATCH_BYTES``
    of input), and at least ``CALLS_PER_WORKER`` calls per worker when there are enough images."""
    videos = sorted((item for item in jobs if item[1].kind == "video"), key=lambda item: -_size(item[1].source))
    images = [item for item in jobs if item[1].kind != "video"]
    most = max(1, min(BATCH_FILES, math.ceil(len(images) / (workers * CALLS_PER_WORKER))))
    groups: list[list[tuple[int, Job]]] = [[item] for item in videos]
    current: list[tuple[int, Job]] = []
    size = 0
    for item in images:
        size += _size(item[1].source)
        current.append(item)
        if len(current) >= most or size >= BATCH_BYTES:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


@dataclass(frozen=True)
class Actors:
    """The workers to start: ``count`` actors on ``device`` with ``threads`` torch threads each, each asking Ray
    for ``options`` (its GPU and CPUs)."""
    device: str
    count: int
    threads: int
    options: dict


def plan_actors(nodes: Sequence[Mapping[str, float]], device: str | None = None, half: bool = False,
                threads: int | None = None, workers: int | None = None, calls: int = 1) -> Actors:
    """The actors for a cluster whose live nodes have the resources ``nodes`` (``ray.nodes()``'s "Resources"):
    with ``device`` None, "cuda" where the cluster has a GPU. cuda: one actor per GPU, each with its GPU and one
    CPU (its torch threads: 1); a CPU-only node gets none, so that every output is made by the same arithmetic.
    cpu: actors of ``threads`` CPUs (default: 4, or the smallest node's CPUs if fewer), as many as fit on each node,
    with torch's threads set to that. ``workers`` sets the count; never more actors than ``calls``. A
    ``ClusterError`` (status 2) for what the cluster cannot run."""
    gpus = sum(int(node.get("GPU", 0)) for node in nodes)
    device = device or ("cuda" if gpus else "cpu")
    if device == "cuda":
        if not gpus:
            raise ClusterError("--device cuda: the Ray cluster has no GPU", status=2)
        count, threads, options = workers or gpus, 1, {"num_gpus": 1, "num_cpus": 1}
    else:
        if half:
            raise ClusterError("half precision on Ray needs GPU workers (the cluster has no GPU, or --device cpu; "
                               "CPU nodes with and without bf16 units would make different outputs)", 2)
        cpus = [int(node.get("CPU", 0)) for node in nodes if node.get("CPU")]
        threads = threads or max(1, min([4, *cpus]))
        fit = sum(n // threads for n in cpus)
        if not fit:
            raise ClusterError(f"--threads {threads}: no node of the Ray cluster has {threads} CPUs "
                               f"(the largest has {max(cpus, default=0)})", status=2)
        count, options = workers or fit, {"num_cpus": threads}
    return Actors(device, max(1, min(count, calls)), threads, options)


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


def upscale_on_ray(inputs: Sequence[os.PathLike | str], out: os.PathLike | str, *, address: str | None = None,
                   weights=None, scale: int | None = None, ext: str = "png", suffix: str | None = None,
                   quality: int = 95, recursive: bool = False, overwrite: bool = False, tile="auto",
                   tile_pad: int | None = None, backend: str = "auto", alpha: str = "bicubic",
                   device: str | None = None, half: bool = False, threads: int | None = None,
                   workers: int | None = None, max_pixels: int = Image.MAX_IMAGE_PIXELS or 0,
                   codec: str | None = None, crf: int | None = None, preset: str | None = None,
                   batch: int | None = None, task_retries: int = 3, runtime_env: dict | None = None,
                   progress: bool = True, log: Callable[[str], None] | None = None) -> Report:
    """Upscale image and video files (or folders of them) into ``out`` on a Ray cluster: the files of
    ``wdsr-fast upscale INPUTS -o OUT``, one video a call. The inputs and ``out`` must be on storage every node
    sees, and wdsr_fast installed on every node.

    address: None starts a local Ray (and ends it after); ``"auto"`` or ``"ray://HOST:PORT"`` joins a cluster.
    device, half, threads, workers: see ``plan_actors``. codec, crf, preset, batch: the videos', as the command's
    options. task_retries: how often a call is run again after its worker died (at least 1). log: gets each file's
    line (default: stderr, above the progress bar). Raises ``ClusterError`` when the run cannot start; a file that
    fails is in the report (``report.failed``) and the others are done.
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
    files = collect_images([Path(p) for p in inputs], recursive, out, UPSCALE_SUFFIXES)
    if all(item.problem is not None for item in files):
        for item in files:
            log(f"error: {item.path}: {item.problem}")
        raise ClusterError(NOTHING_FOUND)
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
    images, videos, left_out = plan_upscale(files, out, ext, suffix)
    if left_out:
        log(left_out_note(left_out))
    if videos:
        try:
            require_av()
        except VideoError as exc:  # named for each video, without a worker
            for job in videos:
                job.problem = job.problem or str(exc)
    jobs = images + videos
    outcomes: dict[int, Outcome] = {}
    todo: list[tuple[int, Job]] = []
    for index, job in enumerate(jobs):  # what needs no worker: known problems, outputs that exist
        if job.problem is None and (overwrite or not os.path.lexists(job.target)):
            todo.append((index, job))
        else:
            outcomes[index] = run_job(job, _exists)
            log(outcomes[index].line)
    report = Report([], checked.scale, out)
    if todo:
        relative = any(not job.source.is_absolute() or not job.target.is_absolute() for _, job in todo)
        settings = Settings(device="", half=half, tile=tile, tile_pad=tile_pad, backend=backend, alpha=alpha,
                            threads=0, quality=quality, replace=overwrite, max_pixels=max_pixels,
                            weights_name=checked.weights, video=EncodeOptions(codec, crf, preset), batch=batch,
                            cwd=os.getcwd() if relative else None)  # device and threads: plan_actors's, later
        _run_on_cluster(ray, todo, outcomes, report, checked, settings, address, device, threads, workers,
                        task_retries, runtime_env, progress, log)
    report.outcomes = [outcomes[i] for i in range(len(jobs))]
    report.seconds = time.perf_counter() - started
    return report


def _exists(job: Job) -> tuple[str, int]:
    raise OutputExists(f"{job.target} exists")  # run_job's line for an output that is kept


def _run_on_cluster(ray, todo: list[tuple[int, Job]], outcomes: dict[int, Outcome], report: Report,
                    checked: Upscaler, settings: Settings, address: str | None, device: str | None,
                    threads: int | None, workers: int | None, task_retries: int, runtime_env: dict | None,
                    progress: bool, log: Callable[[str], None]) -> None:
    from ray.util import ActorPool
    from tqdm import tqdm

    ours = _connect(ray, address, runtime_env)
    actors: list = []
    try:
        plan = plan_actors([n["Resources"] for n in ray.nodes() if n.get("Alive")], device, settings.half, threads,
                           workers, len(todo))
        settings.device, settings.threads = plan.device, plan.threads
        options = dict(plan.options, max_restarts=-1, max_task_retries=task_retries)
        if runtime_env and not ours:  # a Ray started before: the actors get it
            options["runtime_env"] = runtime_env
        shipped = ray.put((checked.config, checked.model.state_dict()))  # once, for every actor
        actor_class = ray.remote(UpscaleWorker)
        actors += [actor_class.options(**options).remote([shipped], settings) for _ in range(plan.count)]
        for name, problem in ray.get([a.ready.remote() for a in actors]):
            if problem is not None:
                raise ClusterError(f"worker {name} cannot upscale: {problem}", status=2)
        pool = ActorPool(actors)
        for group in batches(todo, plan.count):
            pool.submit(lambda actor, items: actor.run.remote(items), group)
        lost: list[str] = []
        bar = tqdm(total=len(todo), desc="upscaling", unit="file", file=sys.stderr, disable=not progress)
        done, started = 0, time.perf_counter()
        with bar:
            while pool.has_next():
                try:
                    results = pool.get_next_unordered()
                except ray.exceptions.RayError as exc:  # a call whose worker died on every try: named below
                    lost.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    continue
                for index, outcome in results:
                    outcomes[index] = outcome
                    done += outcome.status == "done"
                    log(outcome.line)
                    report.add(outcome)
                bar.update(len(results))
                bar.set_postfix_str(f"{done / max(time.perf_counter() - started, 1e-9):.2f} files/s")
            reason = lost[-1] if lost else "no result"
            for index, job in todo:
                if index not in outcomes:
                    outcomes[index] = Outcome(str(job.source), "failed", f"error: {job.source}: its worker died on "
                                              f"every try ({task_retries + 1}): {reason}", job.kind)
                    log(outcomes[index].line)
                    report.add(outcomes[index])
                    bar.update(1)
    finally:
        for actor in actors:
            ray.kill(actor)  # their CPUs and GPUs free at once for what runs next on this Ray
        if ours:
            ray.shutdown()

"""Data curation: a mood-tagged music catalogue -> riffusion spectrogram images with captions.

The original project's recipe, step by step (each a function here or in a helper module):

1. **select** (:func:`select`): tracks whose moods intersect the dataset moods; a track with
   several gets one, by ``mood_rule``: ``first`` (the first of the track's own moods that is
   wanted), ``rarest`` (the wanted mood with the fewest tracks in the catalogue) or
   ``priority`` (the first in the order of ``moods``);
2. **fetch** the audio (:mod:`videobgm.dataset.fetch`: local path, or URL via a cache);
3. **resample**: ffmpeg decodes at ``sample_rate`` (mono); audio at another rate than the
   spectrogram's 44.1 kHz is brought back to it, so 8 kHz audio keeps its 4 kHz band limit;
4. **cut** ``clips_per_track`` random windows of ``window_s`` (starts on the 10 ms grid, drawn
   by a generator seeded with (seed, track id)); a track shorter than a window is skipped;
5. **render** each window with the codec (:mod:`videobgm.spectrogram`, parameters in EXIF),
   exactly ``window_s * 100`` px wide;
6. **caption** ``"<mood>, <tag>, <tag>, ..."`` (:func:`caption`);
7. **write** a Hugging Face imagefolder: ``train/*.png`` + ``train/metadata.jsonl``
   (``file_name``, ``text``, ``mood``, ``track_id``, ``start_s``, ``duration_s``), a dataset
   card ``README.md``, ``manifest.json`` and ``failures.jsonl``.

Tracks are processed in worker processes (spawned: torch and fork do not mix), each with one
torch thread; every track writes its images and then a small shard record
(``shards/<track>.json``), so an interrupted run resumes where it stopped and a re-run skips
every track whose record matches its inputs and parameters. ``metadata.jsonl`` is written at
the end from the shard records in catalogue order: the dataset is the same, byte for byte, for
any number of workers. Memory holds one decoded track per worker, whatever the catalogue size.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videobgm import paths
from videobgm.dataset import card as dataset_card
from videobgm.dataset.card import OUTPUTS, push_to_hub
from videobgm.dataset.catalogue import SYNTHETIC, Track, read_catalogue, synthetic_catalogue
from videobgm.dataset.clips import (
    SHARDS,
    TrackJob,
    band_centres_hz,
    band_limited,
    clip_starts,
    file_stem,
    is_done,
    make_job,
    process_track,
    read_record,
    render_clip,
    rows_above,
    to_rate,
)
from videobgm.dataset.fetch import FetchParams
from videobgm.dataset.fetch import fetch as fetch_audio
from videobgm.dataset.params import DEFAULT_NAME, MOOD_RULES, CurateParams, Selected, check_int
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.spectrogram import codec as spectrogram

__all__ = [  # the stage's API; the helper modules' names a caller needs are re-exported
    "DEFAULT_NAME",
    "MOOD_RULES",
    "SYNTHETIC",
    "CurateParams",
    "CurateResult",
    "FetchParams",
    "Selected",
    "add_cli",
    "band_centres_hz",
    "band_limited",
    "caption",
    "choose_mood",
    "clip_starts",
    "curate",
    "default_workers",
    "fetch_audio",
    "load",
    "mood_counts",
    "preview_audio",
    "read_catalogue",
    "render_clip",
    "rows_above",
    "select",
    "synthetic_catalogue",
    "tag_counts",
    "to_rate",
    "track_table",
]

# --------------------------------------------------------------------------- select, caption


def mood_counts(tracks: Sequence[Track]) -> Counter:
    """How many tracks carry each mood (a track counts once for each of its moods)."""
    return Counter(m for t in tracks for m in dict.fromkeys(t.moods))


def choose_mood(moods: Sequence[str], params: CurateParams, counts: Counter) -> str | None:
    """The one wanted mood of a track with ``moods``, by ``params.mood_rule``; None if none."""
    matches = [m for m in dict.fromkeys(moods) if m in params.moods]
    if not matches:
        return None
    if params.mood_rule == "first":
        return matches[0]
    order = {m: i for i, m in enumerate(params.moods)}
    if params.mood_rule == "priority":
        return min(matches, key=order.__getitem__)
    return min(matches, key=lambda m: (counts[m], order[m]))  # rarest, ties by priority


def tag_counts(selection: Sequence[Selected]) -> dict[str, Counter]:
    """How often each tag occurs in the captions of each mood's tracks."""
    counts: dict[str, Counter] = {}
    for chosen in selection:
        counts.setdefault(chosen.mood, Counter()).update(chosen.text.split(", ")[1:])
    return counts


def caption(mood: str, tags: Sequence[str], max_tags: int | None = None) -> str:
    """``"<mood>, <tag>, <tag>, ..."``: the track's tags in order, without repeats, the mood
    or commas (a comma inside a tag would split it), at most ``max_tags`` of them."""
    clean = [" ".join(t.replace(",", " ").split()) for t in tags]
    kept = [t for t in dict.fromkeys(clean) if t and t != mood]
    return ", ".join([mood, *kept[:max_tags]])


def select(tracks: Sequence[Track], params: CurateParams | None = None) -> list[Selected]:
    """The tracks with a wanted mood, in catalogue order, each with its mood and caption.

    With ``params.limit`` the first tracks of each mood are taken in turn (happy, sad, happy,
    sad, ...) so that a quick run keeps every mood; a larger limit selects a superset.
    """
    params = params or CurateParams()
    counts = mood_counts(tracks)
    chosen = []
    for track in tracks:
        mood = choose_mood(track.moods, params, counts)
        if mood is not None:
            chosen.append(Selected(track, mood, caption(mood, track.tags, params.max_tags)))
    if params.limit is None or params.limit >= len(chosen):
        return chosen
    queues = {m: [i for i, s in enumerate(chosen) if s.mood == m] for m in params.moods}
    keep: list[int] = []
    for rank in range(len(chosen)):
        for mood in params.moods:
            if rank < len(queues[mood]) and len(keep) < params.limit:
                keep.append(queues[mood][rank])
    return [chosen[i] for i in sorted(keep)]


# --------------------------------------------------------------------------- the whole run


@dataclass(frozen=True)
class CurateResult:
    """What a run did; the dataset's own counts are in its manifest."""

    out: Path
    catalogue_tracks: int
    selected: int  # tracks with a wanted mood (after ``limit``)
    processed: int  # tracks processed in this run
    resumed: int  # tracks finished by an earlier run, skipped
    short: int  # tracks shorter than one window (skipped, counted)
    failed: int  # tracks that could not be fetched or decoded (in failures.jsonl)
    clips: int  # rows of the dataset
    clips_written: int  # images rendered in this run
    seconds: float  # wall-clock time of this run
    workers: int

    @property
    def clips_per_second(self) -> float:
        """Images rendered per second of this run (0 when none was)."""
        return self.clips_written / self.seconds if self.seconds > 0 else 0.0


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def curate(
    source: str | Path = SYNTHETIC,
    out: str | Path | None = None,
    params: CurateParams | None = None,
    *,
    workers: int | None = None,
    fetch: FetchParams | None = None,
    progress: bool = True,
    overwrite: bool = False,
    ray: bool = False,
    address: str | None = None,
) -> CurateResult:
    """Make (or complete) the dataset of ``source`` in ``out`` (default
    ``data/processed/spectro-caption``) with ``workers`` processes (default: the usable
    cores), or with ``ray`` as tasks on the Ray cluster at ``address`` (see
    :func:`videobgm.engine.connect`; the same files, byte for byte). Returns the run's
    counts; raises InputError for a bad source or folder, when no
    track has a wanted mood, or when not a single clip could be made."""

    began = time.perf_counter()
    params, fetch = params or CurateParams(), fetch or FetchParams()
    out = Path(out) if out is not None else paths.processed() / DEFAULT_NAME
    if ray:
        from videobgm import engine  # above this module (its batches run the pipeline): no cycle

        workers = int(engine.connect(address).get("CPU", 1))  # the cluster's cores
    workers = default_workers() if workers is None else workers
    check_int("workers", workers, 1)
    prepare_folder(out, overwrite)
    catalogue = read_catalogue(source)
    selection = select(catalogue.tracks, params)
    if not selection:
        raise InputError(
            f"no track of {catalogue.source} has any of the moods {', '.join(params.moods)}"
        )
    jobs = [make_job(s, out, params, fetch) for s in selection]
    todo = [job for job in jobs if not is_done(job)]
    written = run_jobs(todo, workers, progress, ray)
    summary = dataset_card.finish(out, catalogue, selection, jobs, params)
    return CurateResult(
        out=out,
        catalogue_tracks=len(catalogue.tracks),
        selected=len(selection),
        processed=len(todo),
        resumed=len(jobs) - len(todo),
        short=summary["tracks"]["short"],
        failed=summary["tracks"]["failed"],
        clips=summary["clips"]["total"],
        clips_written=written,
        seconds=time.perf_counter() - began,
        workers=workers,
    )


def prepare_folder(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder that curation did not make; with ``overwrite``, remove what
    an earlier run wrote there (and nothing else)."""

    ours = out / SHARDS
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a dataset folder")
    if out.is_dir() and any(out.iterdir()) and not ours.is_dir():
        raise InputError(
            f"{out} is not empty and was not made by `videobgm curate`; choose another folder"
        )
    if overwrite and ours.is_dir():
        import shutil

        shutil.rmtree(ours)
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
        for png in (out / "train").glob("*.png"):
            png.unlink()
    paths.ensure_dir(ours)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core: threads would only contend


def run_jobs(
    jobs: Sequence[TrackJob], workers: int, progress: bool = True, ray: bool = False
) -> int:
    """Process ``jobs`` (in this process when ``workers`` is 1, else in spawned worker
    processes, at most two jobs queued per worker; with ``ray``, as tasks on the connected Ray
    cluster); return the number of images written."""
    from tqdm.auto import tqdm

    from videobgm import engine  # above this module (its batches run the pipeline): no cycle

    written = 0
    with tqdm(total=len(jobs), unit="track", desc="curate", disable=not progress) as bar:
        records = engine.map_unordered(process_track, jobs) if ray else _records(jobs, workers)
        for record in records:
            written += len(record["rows"])
            bar.set_postfix(clips=written, refresh=False)
            bar.update()
    return written


def _records(jobs: Sequence[TrackJob], workers: int) -> Iterator[dict]:
    if workers == 1 or len(jobs) <= 1:
        with models.torch_threads(1):  # as workers do: the same numbers, byte for byte
            yield from map(process_track, jobs)
        return
    context = multiprocessing.get_context("spawn")  # fork + torch's thread pools can deadlock
    queue = iter(jobs)
    with ProcessPoolExecutor(min(workers, len(jobs)), context, _init_worker) as pool:
        pending = set()
        try:
            while True:
                while len(pending) < 2 * workers and (job := next(queue, None)) is not None:
                    pending.add(pool.submit(process_track, job))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BaseException:  # interrupted or a worker failed: queued tracks do not start
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def track_table(out: str | Path, selection: Sequence[Selected]):
    """One row per selected track of a written dataset: ``track_id``, ``mood``, ``status``
    (``ok``, ``short``, ``failed``), ``track_s`` (seconds, when decoded), ``clips``, ``error``."""
    import pandas as pd

    table = []
    for chosen in selection:
        record = read_record(Path(out), file_stem(chosen.track.track_id)) or {}
        table.append(
            {
                "track_id": chosen.track.track_id,
                "mood": chosen.mood,
                "status": record.get("status", "missing"),
                "track_s": record.get("track_s"),
                "clips": len(record.get("rows", [])),
                "error": record.get("error"),
            }
        )
    return pd.DataFrame(table)


def preview_audio(images: Sequence, rate: int = 22050, iterations: int = 32) -> list[np.ndarray]:
    """Audio of spectrogram images for listening: decoded by the codec, peak-normalised,
    resampled to ``rate``. Runs on one torch thread: on a shared machine, two threads that
    busy-wait for each other made Griffin-Lim five times slower (3 s against 15 s for 7 clips
    at a load of 4 on 2 cores)."""

    with models.torch_threads(1):
        decoded = spectrogram.audio_from_images(
            images, iterations=iterations, postfilter="normalize", device="cpu"
        )
    rates = [spectrogram.read_exif(image)[0].sample_rate for image in images]
    return [to_rate(a, r, rate) for a, r in zip(decoded, rates, strict=True)]


def load(out: str | Path, split: str = "train"):
    """The written dataset as a ``datasets.Dataset`` (columns ``image``, ``text``, ``mood``,
    ``track_id``, ``start_s``, ``duration_s``)."""
    import datasets

    return datasets.load_dataset("imagefolder", data_dir=str(out), split=split)


# --------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    """``videobgm curate --source SOURCE --out DIR [...]``."""
    defaults = CurateParams()
    parser = subparsers.add_parser(
        "curate",
        help="mood-tagged music catalogue -> spectrogram image + caption dataset",
        description="Select the tracks of a mood-tagged catalogue whose moods are wanted, cut "
        "random windows, render them as riffusion spectrogram images with captions "
        '"<mood>, <tag>, ..." and write a Hugging Face imagefolder. Resumable: a re-run skips '
        "finished tracks. SOURCE: 'synthetic' (procedural music, offline), a CSV/Parquet/JSONL "
        "file or folder (columns track_id, audio, moods, tags), or a Hub dataset id.",
    )
    add = parser.add_argument
    add("--source", required=True, help="'synthetic', a catalogue file or folder, or a Hub id")
    add("--out", required=True, help="dataset folder (created; a re-run completes it)")
    add("--moods", nargs="+", default=list(defaults.moods), help="moods to select (default: 7)")
    add("--mood-rule", choices=MOOD_RULES, default=defaults.mood_rule, help="one mood per track")
    add("--clips-per-track", type=int, default=defaults.clips_per_track, help="default 10")
    add("--window-s", type=float, default=defaults.window_s, help="clip seconds (default 5.12)")
    add("--sample-rate", type=int, default=defaults.sample_rate, help="Hz (default 44100)")
    add("--workers", type=int, default=None, help="processes (default: the usable cores)")
    add("--seed", type=int, default=defaults.seed, help="window positions (default 0)")
    add("--limit", type=int, default=None, help="at most N tracks, taken in turn per mood")
    add("--max-tags", type=int, default=None, help="tags per caption (default: all)")
    add("--timeout-s", type=float, default=FetchParams.timeout_s, help="per download attempt")
    add("--retries", type=int, default=FetchParams.retries, help="after a transient failure")
    add("--overwrite", action="store_true", help="remove an earlier run's files in --out first")
    add("--push-to-hub", metavar="REPO_ID", default=None, help="upload (private; $HF_TOKEN)")
    add("--quiet", action="store_true", help="no progress bar")
    from videobgm import engine  # above this module (its batches run the pipeline): no cycle

    engine.add_options(add)
    parser.set_defaults(func=_cli_curate)


def _cli_curate(args) -> int:
    params = CurateParams(
        moods=tuple(args.moods),
        mood_rule=args.mood_rule,
        clips_per_track=args.clips_per_track,
        window_s=args.window_s,
        sample_rate=args.sample_rate,
        seed=args.seed,
        limit=args.limit,
        max_tags=args.max_tags,
    )
    fetch = FetchParams(timeout_s=args.timeout_s, retries=args.retries)
    result = curate(
        args.source, args.out, params, workers=args.workers, fetch=fetch,
        progress=not args.quiet, overwrite=args.overwrite, ray=args.engine == "ray",
        address=args.address,
    )  # fmt: skip
    print(
        f"{result.out}: {result.clips} clips from {result.selected - result.short - result.failed}"
        f" tracks ({result.processed} processed now, {result.resumed} done before; "
        f"{result.short} too short, {result.failed} failed: see failures.jsonl); "
        f"{result.clips_written} images in {result.seconds:.1f} s with {result.workers} worker(s)"
    )
    if args.push_to_hub:
        print(f"pushed: {push_to_hub(result.out, args.push_to_hub)}")
    return 0

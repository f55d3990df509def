"""Video in, video out: every stage in order, cached in a run folder, resumable.

``run(video)`` decodes the audio, finds where someone speaks (Silero VAD), transcribes it (or
reads sidecar captions), classifies each phrase, builds the emotion timeline (or takes an
edited one), isolates the voice, composes the new music (N variants), mixes it ducked under
the speech, and muxes the mix back under the untouched video stream. The delivered file's
audio is decoded and measured; when the codec pushed its true peak above the ceiling, the mix
is made again with the limiter's ceiling lowered by the overshoot and encoded again.
With ``rank``, a CLAP model scores each variant's fit to the timeline
(:mod:`videobgm.evaluate`) and the outputs are numbered best first (``ranking.json``).

Each stage writes its outputs atomically into the run folder and records a key: a hash of its
parameters and of the keys of the stages it depends on. A re-run skips every stage whose key
and outputs are unchanged, so an interrupted run resumes, and an edited timeline recomputes
only composition, mix and mux. The input file is never written to.

Audio is streamed: separation decodes and writes a chunk at a time, composition overlap-adds
clips into blocks written as they are final, the mix reads the voice and music files a piece
at a time, and the report's waveforms are drawn from min/max per bin. Peak memory therefore
does not grow with the video's length (``make bench``: 611 MiB for 1 minute, 643 MiB for 30,
of which about 240 MiB are imports; the 40 s separation chunk is the largest working set).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videobgm import evaluate, generate, media, paths, prompts, vad
from videobgm.compose import renderer as compose
from videobgm.emotion import classifier as emotion
from videobgm.emotion import io as timeline_io
from videobgm.emotion.classifier import TimelineParams
from videobgm.errors import InputError, VideobgmError
from videobgm.evaluate import ranking_markdown
from videobgm.mix import MixParams, measure_file, mix_files
from videobgm.models import profiles as models
from videobgm.plots.pipeline import write_report
from videobgm.separate import DemucsParams, SpectralParams, separate_file
from videobgm.transcribe import (
    Transcript,
    find_sidecar,
    load_transcript,
    normalise_language,
    save_transcript,
    split_sentences,
    transcript_for,
)
from videobgm.vad import VadParams
from videobgm.vocab import CLIP_SECONDS, SAMPLE_RATE

MIN_DURATION_S = 1.0  # shorter inputs are refused
STAGE_VERSION = 1  # bump when a stage's outputs change meaning, to invalidate old run folders
MUSIC = ("auto", "riffusion", "procedural")
SEPARATION = ("auto", "spectral", "demucs", "none")
AUDIO_OUTPUTS = {".wav", ".flac"}
CPU_RIFFUSION_S_PER_CLIP = 60.0  # s; rough: riffusion, 20 steps, one 5.12 s clip, 8-core CPU
RANKING_FILE = "ranking.json"  # per-variant fit scores, best first (with ``rank``)
REENCODES = 2  # at most this many extra mix-and-encode passes to hold the delivered true peak
PEAK_MARGIN_DB = 0.1  # dB the ceiling is lowered beyond the measured overshoot
# The stages in the order a run visits them (``rank`` only with ``rank=True``).
STAGES = ("vad", "transcribe", "timeline", "separate", "compose", "rank", "mix", "deliver",
          "report")  # fmt: skip


@dataclass(frozen=True)
class RunParams:
    """Everything a run can be asked for; every value is checked before any work starts."""

    profile: str = "auto"  # model profile: auto | pretrained | tiny
    music: str = "auto"  # riffusion | procedural | auto (riffusion when its weights are here)
    variants: int = 1  # alternative music tracks (and output videos) to make
    seed: int = 0  # music seed; variant k uses seed + k
    separator: str = "auto"  # spectral | demucs | none | auto (the profile's)
    target_lufs: float = -14.0  # loudness of the final mix
    duck_db: float = -12.0  # music attenuation under speech
    activity: str = "vad"  # where the music ducks: vad | voice | transcript, or a union (a+b)
    neutral_policy: str = "ambient"  # extend | ambient | silence
    min_span_s: float = 5.0  # shortest emotion span
    min_confidence: float = 0.4  # phrases less sure than this count as neutral
    method: str = "rules"  # rules | viterbi
    language: str | None = None  # spoken language code (None: detect)
    sidecar: str | None = None  # captions file; None looks for <stem>.srt/.vtt; "" never
    timeline: str | None = None  # an edited timeline (JSON) used instead of the analysis
    steps: int | None = None  # riffusion denoising steps (None: generate's default)
    device: str | None = None  # cpu | cuda (None: $VIDEOBGM_DEVICE or what is visible)
    # riffusion's mood LoRA: a hub id, a folder, "none", or "auto" (the profile's: the LoRA
    # notebook 02 trained when there is one, else none; the tiny profile's tiny LoRA)
    lora: str = "auto"
    rank: bool = False  # score each variant's fit to the timeline (CLAP); outputs best first

    def __post_init__(self) -> None:
        # "English", "EN" and "en" are one language (Whisper's table); unknown: one sentence
        object.__setattr__(self, "language", normalise_language(self.language))
        _choose("music", self.music, MUSIC)
        _choose("separator", self.separator, SEPARATION)
        if isinstance(self.variants, bool) or not isinstance(self.variants, int):
            raise InputError(f"variants must be a whole number, not {self.variants!r}")
        if not 1 <= self.variants <= 16:
            raise InputError(f"variants must be between 1 and 16, not {self.variants}")

        self.timeline_params(TimelineParams)  # each raises InputError on a bad value
        self.mix_params(MixParams)

    def model_stages(self) -> tuple[str, ...]:
        """The model stages (``models.STAGE_NAMES``) this run loads: the offline banner names
        only these (no CLAP without ``rank``, no riffusion for procedural music)."""
        used = {
            "speech": True,
            "emotion": True,
            "music": self.music != "procedural",
            "voice": self.separator in ("auto", "demucs"),
            "fit": self.rank,
        }
        return tuple(stage for stage, on in used.items() if on)

    def mix_params(self, cls: Any = None) -> Any:
        return (cls or MixParams)(
            target_lufs=self.target_lufs, duck_db=self.duck_db, activity=self.activity
        )

    def timeline_params(self, cls: Any = None) -> Any:
        return (cls or TimelineParams)(
            min_confidence=self.min_confidence, min_span_s=self.min_span_s,
            neutral_policy=self.neutral_policy, method=self.method,
        )  # fmt: skip


def _choose(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


@dataclass
class Result:
    """Every artefact of a run (paths), and which stages ran or were reused."""

    input: Path
    run_dir: Path
    outputs: list[Path]  # the final video per variant (audio file for audio-only input)
    voice: Path
    bgm: list[Path]
    mix: list[Path]
    timeline: dict[str, Path]  # json, csv, srt
    plans: list[Path]
    transcript: Path
    report: Path
    speech: Path  # the speech spans (Silero VAD), JSON
    delivered: Path  # loudness and true peak measured on each delivered file, JSON
    profile: str
    music: str
    stages: dict[str, str] = field(default_factory=dict)  # stage -> "ran" | "reused"
    scores: list[dict[str, Any]] = field(default_factory=list)  # per output, when ranked


# --------------------------------------------------------------------------- stage bookkeeping


class _Stages:
    """The run folder's stage log: one record per stage with its key and outputs."""

    def __init__(self, folder: Path, progress: bool, release: bool = True):
        self.folder = folder
        self.release = release  # drop each stage's models when it ends
        self.log_path = folder / paths.RUN_STAGES
        self.records = json.loads(self.log_path.read_text()) if self.log_path.exists() else {}
        self.status: dict[str, str] = {}
        self.progress = progress
        self.only: frozenset[str] | None = None  # run only these stages (``run_stages``)

    def _outside(self, name: str, reusable: bool) -> bool:
        """With ``only``: True for a stage before the stretch (it must be reusable); the end
        of the stretch is signalled by :class:`_StretchDone`."""
        if self.only is None or name in self.only:
            return False
        if self.only & set(self.status):
            raise _StretchDone
        if not reusable:
            raise InputError(
                f"{self.folder}: stage {name} has not run yet, so {', '.join(sorted(self.only))}"
                " cannot run; run the stages in order"
            )
        return True

    def run(self, name: str, key: str, outputs: list[Path], work: Callable[[], None]) -> str:
        """Run ``work`` unless the stage's key and outputs are unchanged; return its key."""
        record = self.records.get(name, {})
        reusable = record.get("key") == key and all(p.exists() for p in outputs)
        if self._outside(name, reusable) or reusable:
            self.status[name] = "reused"
            self._say(f"{name:10} reused")
            return key
        started = time.perf_counter()
        self._say(f"{name:10} ...")
        try:
            work()
        finally:
            if self.release:  # the next stage's models get the memory (GPU: one stage's)
                models.release_models()
        seconds = time.perf_counter() - started
        self.records[name] = {
            "key": key, "outputs": [p.name for p in outputs], "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }  # fmt: skip
        with paths.atomic_output(self.log_path) as tmp:
            tmp.write_text(json.dumps(self.records, indent=1), encoding="utf-8")
        self.status[name] = "ran"
        self._say(f"{name:10} done in {seconds:.1f} s")
        return key

    def _say(self, line: str) -> None:
        if self.progress:
            print(f"videobgm: {line}", file=sys.stderr, flush=True)


class _StretchDone(Exception):
    """``run_stages`` reached the first stage after the ones it was asked for."""


def _key(*parts: Any) -> str:
    blob = json.dumps([STAGE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the run


def run(
    video_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    keep_models: bool = False,
    **params: Any,
) -> Result:
    """Give a video new background music that follows what it says; see the module docstring.

    ``out_path`` defaults to ``<stem>.videobgm.<ext>`` beside the input (``-2``, ``-3``... for
    more variants; a ``.wav`` mix for audio-only input). ``params`` are :class:`RunParams`
    fields. Each stage's models are released when it ends (GPU memory holds one stage's at a
    time); ``keep_models`` keeps them loaded for the life of the process (for measurements).
    Returns a :class:`Result` naming every artefact.
    """
    job, outputs = _prepare(video_path, out_path, run_dir, progress, keep_models, params)
    return job.execute(outputs)


def run_stages(
    video_path: str | os.PathLike[str],
    names: Collection[str],
    out_path: str | os.PathLike[str] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    keep_models: bool = False,
    **params: Any,
) -> dict[str, str]:
    """Only the stages ``names`` of :func:`run` (a contiguous stretch of :data:`STAGES`), for an
    engine that runs a video's stages in different processes (``videobgm.engine``). The stages
    before them must have run in this run folder (they are reused; else one InputError
    sentence); the stages after them are left for a later call. Arguments as :func:`run`'s.
    Returns ``{stage: "ran" | "reused"}`` for the stages visited."""
    unknown = set(names) - set(STAGES)
    if unknown:
        raise InputError(f"unknown stage {sorted(unknown)[0]!r}; the stages are {STAGES}")
    job, outputs = _prepare(video_path, out_path, run_dir, progress, keep_models, params)
    job.stages.only = frozenset(names)
    try:
        job.execute(outputs)
    except _StretchDone:
        pass
    return dict(job.stages.status)


def _prepare(video_path, out_path, run_dir, progress, keep_models, params) -> tuple:
    """The checked settings, the run folder and the outputs of a run: ``(_Job, outputs)``."""
    unknown = set(params) - {f.name for f in dataclasses.fields(RunParams)}
    if unknown:
        raise InputError(f"unknown parameter {sorted(unknown)[0]!r} for videobgm.pipeline.run")
    settings = RunParams(**params)
    source = Path(video_path)
    info = media.probe(source)  # missing, empty, unreadable: one MediaError sentence
    if info.duration_s < MIN_DURATION_S:
        raise InputError(f"{source}: is {info.duration_s:.2f} s long; at least 1 s is needed")
    outputs = _output_paths(source, out_path, info.has_video, settings.variants)
    profile = models.resolve_profile(settings.profile, settings.device, settings.model_stages())
    if settings.lora != "auto":
        profile = dataclasses.replace(profile, lora=settings.lora)
    input_hash = file_hash(source)
    folder = paths.ensure_dir(
        Path(run_dir)
        if run_dir
        else paths.runs() / f"{source.stem}-{_key(input_hash, profile)[:8]}"
    )
    stages = _Stages(folder, progress, release=not keep_models)
    return _Job(source, info, settings, profile, input_hash, folder, stages), outputs


def _output_paths(source: Path, out_path, has_video: bool, variants: int) -> list[Path]:
    if out_path is None:
        suffix = source.suffix if has_video else ".wav"
        out = source.with_name(f"{source.stem}.videobgm{suffix}")
    else:
        out = Path(out_path)
    if not has_video and out.suffix.lower() not in AUDIO_OUTPUTS:
        raise InputError(f"{source}: has no video stream, so the output must be .wav or .flac")
    outs = [out] + [out.with_name(f"{out.stem}-{k}{out.suffix}") for k in range(2, variants + 1)]
    for candidate in outs:
        if candidate.resolve() == source.resolve():
            raise InputError(f"{candidate}: the output path is the input; refusing to overwrite it")
    return outs


class _Job:
    """One run's state: the stages share their keys through it."""

    def __init__(self, source, info, settings, profile, input_hash, folder, stages):
        self.source, self.info, self.settings = source, info, settings
        self.profile, self.input_hash, self.folder, self.stages = (
            profile,
            input_hash,
            folder,
            stages,
        )
        self.device = settings.device or models.default_device()
        self.n_samples = int(round(info.duration_s * SAMPLE_RATE))
        self.music = _music_backend(settings.music, profile, self.device, info.duration_s)
        self.separator = profile.separator if settings.separator == "auto" else settings.separator

    def execute(self, outputs: list[Path]) -> Result:
        speech_key = self.detect_speech()
        transcript_key = self.transcribe()
        timeline_key = self.analyse(transcript_key, speech_key)
        voice_key = self.separate()
        compose_key = self.compose(timeline_key)
        rank_key = self.rank(compose_key)
        mix_key = self.mix(voice_key, compose_key, transcript_key, speech_key)
        deliver_key = self.deliver(mix_key, rank_key, outputs)
        self.report(compose_key, deliver_key)
        return self.result(outputs)

    # -- stages ---------------------------------------------------------------------------

    def detect_speech(self) -> str:
        """``speech.json``: Silero VAD's spans on the original audio (16 kHz, streamed)."""

        key = _key("speech", self.input_hash, "silero-vad", dataclasses.asdict(VadParams()))
        out = self.folder / paths.RUN_SPEECH

        def work() -> None:
            vad.save_spans(vad.detect_file(self.source, progress=self.stages.progress), out)

        return self.stages.run("vad", key, [out], work)

    def transcribe(self) -> str:
        sidecar = _sidecar(self.settings.sidecar)
        captions = _captions_hash(self.source, sidecar)
        key = _key("transcript", self.input_hash, self.profile.whisper(self.device), captions,
                   self.settings.language)  # fmt: skip
        out = self.folder / paths.RUN_TRANSCRIPT

        def work() -> None:
            if not self.info.has_audio:  # nothing is said: the timeline becomes one calm span
                transcript = Transcript((), self.info.duration_s, None, "no audio stream")
            else:
                transcript = transcript_for(
                    self.source, self.profile, sidecar, device=self.device,
                    language=self.settings.language, progress=self.stages.progress,
                )  # fmt: skip
            save_transcript(transcript, out)

        return self.stages.run("transcribe", key, [out], work)

    def analyse(self, transcript_key: str, speech_key: str) -> str:
        edited = self._edited_timeline()
        base = self.folder / "timeline"
        outs = [base.with_suffix(s) for s in timeline_io.FORMATS] + [self.folder / paths.RUN_SCORES]
        params = dataclasses.asdict(self.settings.timeline_params())
        edited_hash = file_hash(edited) if edited else None
        key = _key("timeline", transcript_key, speech_key, self.profile.emotion,
                   self.profile.emotion_revision, params, edited_hash)  # fmt: skip

        def work() -> None:
            if edited is not None and not self.settings.timeline:
                print(
                    f"videobgm: the emotion classifier is an offline stand-in, so the intended "
                    f"timeline {edited.name} beside the video is used",
                    file=sys.stderr,
                )
            spans, scores = self._spans(edited)
            for out in outs[:-1]:
                timeline_io.save_timeline(spans, out)
            with paths.atomic_output(outs[-1]) as tmp:
                np.save(tmp, scores)

        return self.stages.run("timeline", key, outs, work)

    def _edited_timeline(self) -> Path | None:
        """The user's timeline; or, when emotion runs on a random stand-in model, the intended
        timeline shipped beside the video (``<stem>.timeline.json``), as the demo sample has."""
        if self.settings.timeline:
            return Path(self.settings.timeline)
        beside = self.source.with_name(f"{self.source.stem}.timeline.json")
        if self.profile.emotion.startswith("tiny:") and beside.exists():
            return beside
        return None

    def _spans(self, edited: Path | None):
        transcript = _snapped(split_sentences(load_transcript(self.folder / paths.RUN_TRANSCRIPT)),
                              self.folder / paths.RUN_SPEECH)  # fmt: skip
        if edited is not None:
            spans = timeline_io.load_timeline(edited, self.info.duration_s)
            return spans, np.zeros((0, 7), np.float32)
        scores = emotion.classify(transcript, self.profile, self.device, progress=False)
        params = self.settings.timeline_params()
        return emotion.timeline(transcript, scores, params, self.info.duration_s), scores

    def separate(self) -> str:
        chosen = {"spectral": SpectralParams, "demucs": DemucsParams}.get(self.separator)
        params = dataclasses.asdict(chosen()) if chosen else {}
        key = _key("voice", self.input_hash, self.separator, params)
        out = self.folder / paths.RUN_VOICE

        def work() -> None:

            # Decoded, separated and written chunk by chunk (silence when there is no audio).
            model = "tiny" if self.separator == "demucs" and self.profile.offline else None
            separate_file(self.source, out, self.n_samples, SAMPLE_RATE, self.separator,
                          model=model, device=self.device)  # fmt: skip

        return self.stages.run("separate", key, [out], work)

    def compose(self, timeline_key: str) -> str:
        s = self.settings
        bgm = self._variant_paths("bgm", ".wav")
        plans = [p.with_name(f"{p.stem}.plan.json") for p in bgm]
        prompt_file = prompts.prompts_path()
        key = _key("music", timeline_key, self.music, s.variants, s.seed, s.steps,
                   s.neutral_policy, self._music_models(), file_hash(prompt_file),
                   self.info.duration_s)  # fmt: skip

        def work() -> None:
            spans = timeline_io.load_timeline(self.folder / paths.RUN_TIMELINE)
            compose.compose_to_files(  # stitched and written block by block
                spans, self.info.duration_s, bgm, music=self.music, variants=s.variants,
                seed=s.seed, neutral="silence" if s.neutral_policy == "silence" else "music",
                profile=self.profile, steps=s.steps, device=self.device,
                progress=self.stages.progress,
            )  # fmt: skip

        return self.stages.run("compose", key, bgm + plans, work)

    def _music_models(self) -> list | None:
        """What the music stage loads, for its key: riffusion at its commit and the LoRA
        (a local one by its bytes, so a retrained LoRA is never silently reused)."""
        if self.music != "riffusion":
            return None

        lora, _ = generate.resolve_lora(self.profile.lora)
        weights = generate.lora_weights_file(lora) if lora else None
        identity = file_hash(weights) if weights else lora
        return [self.profile.diffusion, self.profile.diffusion_revision, identity]

    def rank(self, compose_key: str) -> str:
        """With ``rank``: each variant's fit to the timeline (CLAP zero-shot, see
        :mod:`videobgm.evaluate`), best first, written to ``ranking.json``."""
        if not self.settings.rank:
            return "unranked"
        out = self.folder / RANKING_FILE
        key = _key("rank", compose_key, self.profile.clap, self.profile.clap_revision)

        def work() -> None:
            spans = timeline_io.load_timeline(self.folder / paths.RUN_TIMELINE)
            clap = evaluate.load_clap(self.profile, self.device)
            records = evaluate.rank_variants(self._variant_paths("bgm", ".wav"), spans, clap)
            with paths.atomic_output(out) as tmp:
                tmp.write_text(json.dumps(records, indent=1), encoding="utf-8")

        return self.stages.run("rank", key, [out], work)

    def _ranking(self) -> list[dict[str, Any]]:
        path = self.folder / RANKING_FILE
        return json.loads(path.read_text()) if self.settings.rank else []

    def _order(self) -> list[int]:
        """Run-folder variant indices (0-based) in output order: best first when ranked."""
        ranking = self._ranking()
        if not ranking:
            return list(range(self.settings.variants))
        return [record["variant"] - 1 for record in ranking]

    def _ordered(self, stem: str, suffix: str) -> list[Path]:
        files = self._variant_paths(stem, suffix)
        return [files[k] for k in self._order()]

    def mix(self, voice_key: str, compose_key: str, transcript_key: str, speech_key: str) -> str:
        params = self.settings.mix_params()
        outs = self._variant_paths("mix", ".wav")
        key = _key("mix", voice_key, compose_key, transcript_key, speech_key,
                   dataclasses.asdict(params))  # fmt: skip

        def work() -> None:
            for bgm_path, out in zip(self._variant_paths("bgm", ".wav"), outs, strict=True):
                self._mix_one(bgm_path, out, params)

        return self.stages.run("mix", key, outs, work)

    def _mix_one(self, bgm_path: Path, out: Path, params) -> None:
        segments = [(s.start, s.end) for s in load_transcript(self.folder / paths.RUN_TRANSCRIPT)]
        speech = vad.load_spans(self.folder / paths.RUN_SPEECH)
        mix_files(self.folder / paths.RUN_VOICE, bgm_path, out, self.n_samples, params, segments,
                  speech)  # fmt: skip

    def deliver(self, mix_key: str, rank_key: str, outputs: list[Path]) -> str:
        """Mux each mix under the video (or write it, for audio-only input), and put the stems
        beside the output: ``<out>.voice.wav``, ``<out>.bgm.wav``, ``<out>.mix.wav``. Ranked
        runs deliver the best variant first."""
        extras = self._beside(outputs)
        record = self.folder / "delivered.json"
        key = _key("deliver", mix_key, rank_key, self.input_hash, [str(p) for p in outputs],
                   REENCODES, PEAK_MARGIN_DB)  # fmt: skip

        def work() -> None:
            mixes, bgms = self._ordered("mix", ".wav"), self._ordered("bgm", ".wav")
            measured = []
            for mix_path, bgm_path, out in zip(mixes, bgms, outputs, strict=True):
                if self.info.has_video:
                    measured.append(self._mux_within_ceiling(mix_path, bgm_path, out))
                else:
                    _copy(mix_path, out)
                    measured.append(_measured_record(out, self.settings.mix_params(), 0))
            for run_file, target in extras:
                _copy(run_file, target)
            with paths.atomic_output(record) as tmp:
                tmp.write_text(json.dumps(measured, indent=1) + "\n", encoding="utf-8")

        outs = outputs + [t for _, t in extras] + [record]
        return self.stages.run("deliver", key, outs, work)

    def _mux_within_ceiling(self, mix_path: Path, bgm_path: Path, out: Path) -> dict:
        """Mux the mix, decode what was written and measure it; while its true peak is above
        the ceiling (the codec's own overshoot), mix again with the limiter's ceiling lowered
        by the overshoot (plus :data:`PEAK_MARGIN_DB`) and encode again, at most
        :data:`REENCODES` times. Returns what was measured on the last file written."""
        target = self.settings.mix_params()
        params = target
        for encode in range(REENCODES + 1):
            media.mux(self.source, mix_path, out)
            measured = _measured_record(out, target, encode, params.true_peak_db)
            overshoot = measured["true_peak_db"] - target.true_peak_db
            if overshoot <= 0 or encode == REENCODES:
                return measured
            params = dataclasses.replace(
                params, true_peak_db=params.true_peak_db - overshoot - PEAK_MARGIN_DB
            )
            self.stages._say(
                f"deliver    {out.name}: {measured['true_peak_db']:.2f} dBTP after encoding; "
                f"mixing again with the limiter at {params.true_peak_db:.2f} dBTP"
            )
            self._mix_one(bgm_path, mix_path, params)  # the stem beside it stays what is heard
        return measured

    def _beside(self, outputs: list[Path]) -> list[tuple[Path, Path]]:
        first = outputs[0]
        pairs = [(self.folder / paths.RUN_VOICE, first.with_name(f"{first.stem}.voice.wav"))]
        for run_bgm, run_mix, out in zip(
            self._ordered("bgm", ".wav"), self._ordered("mix", ".wav"), outputs, strict=True,
        ):  # fmt: skip
            pairs.append((run_bgm, out.with_name(f"{out.stem}.bgm.wav")))
            if self.info.has_video:
                pairs.append((run_mix, out.with_name(f"{out.stem}.mix.wav")))
        return pairs

    def report(self, compose_key: str, deliver_key: str) -> str:
        out = self.folder / "report.md"
        figure = self.folder / "timeline.png"
        key = _key("report", compose_key, deliver_key)

        def work() -> None:
            write_report(self.folder, self.source, self.info, self.music, out, figure)
            if self.settings.rank:
                text = out.read_text(encoding="utf-8") + "\n" + ranking_markdown(self._ranking())
                with paths.atomic_output(out) as tmp:
                    tmp.write_text(text, encoding="utf-8")

        return self.stages.run("report", key, [out, figure], work)

    # -- helpers --------------------------------------------------------------------------

    def _variant_paths(self, stem: str, suffix: str) -> list[Path]:
        if self.settings.variants == 1:
            return [self.folder / f"{stem}{suffix}"]
        return [self.folder / f"{stem}-{k}{suffix}" for k in range(1, self.settings.variants + 1)]

    def result(self, outputs: list[Path]) -> Result:
        base = self.folder / "timeline"
        return Result(
            input=self.source, run_dir=self.folder, outputs=outputs,
            voice=self.folder / paths.RUN_VOICE, bgm=self._ordered("bgm", ".wav"),
            mix=self._ordered("mix", ".wav"),
            timeline={s[1:]: base.with_suffix(s) for s in (".json", ".csv", ".srt")},
            plans=[p.with_name(f"{p.stem}.plan.json") for p in self._ordered("bgm", ".wav")],
            transcript=self.folder / paths.RUN_TRANSCRIPT, report=self.folder / "report.md",
            speech=self.folder / paths.RUN_SPEECH, delivered=self.folder / "delivered.json",
            profile=self.profile.name, music=self.music, stages=dict(self.stages.status),
            scores=self._ranking(),
        )  # fmt: skip


def _snapped(transcript, speech_path: Path):
    """Whisper's segment boundaries moved to the speech detector's edges nearby, so emotion
    spans start where speech starts (caption times are the author's and stay)."""

    if not transcript.source.startswith("whisper") or not len(transcript):
        return transcript
    times = vad.snap_segments([(g.start, g.end) for g in transcript], vad.load_spans(speech_path))
    segments = tuple(
        dataclasses.replace(g, start=a, end=b) for g, (a, b) in zip(transcript, times, strict=True)
    )
    return dataclasses.replace(transcript, segments=segments)


def _music_backend(music: str, profile: models.ModelProfile, device: str, seconds: float) -> str:
    """``auto``: riffusion when the real riffusion weights are available and a GPU runs it,
    else procedural (on a CPU, saying so, with riffusion's rough time for this video)."""
    if music != "auto":
        return music
    if profile.diffusion.startswith("tiny:"):
        return "procedural"
    if not device.startswith("cuda"):
        minutes = -(-seconds // CLIP_SECONDS) * CPU_RIFFUSION_S_PER_CLIP / 60
        print(
            f"videobgm: music: procedural; riffusion was skipped on the CPU (roughly "
            f"{minutes:.0f} min for this video there); --music riffusion runs it anyway",
            file=sys.stderr,
        )
        return "procedural"
    return "riffusion"


def _sidecar(value: str | None):
    if value is None:
        return None  # look beside the video
    return Path(value) if value else False


def _captions_hash(source: Path, sidecar) -> str | None:
    captions = find_sidecar(source) if sidecar is None else (sidecar or None)
    return file_hash(captions) if captions else None


def _measured_record(out: Path, target, encode: int, ceiling_db: float | None = None) -> dict:
    """What the viewer gets: loudness and true peak of ``out``'s decoded audio, against the
    targets ``target`` (MixParams); ``ceiling_db``: the limiter ceiling the mix was made with."""

    measured = measure_file(out)
    return {
        "output": str(out), "loudness_lufs": round(measured.loudness_lufs, 2),
        "true_peak_db": round(measured.true_peak_db, 2), "target_lufs": target.target_lufs,
        "true_peak_ceiling_db": target.true_peak_db,
        "limiter_ceiling_db": round(target.true_peak_db if ceiling_db is None else ceiling_db, 2),
        "reencodes": encode,
    }  # fmt: skip


def _copy(source: Path, target: Path) -> None:
    if target.resolve() == source.resolve():
        return
    with paths.atomic_output(target) as tmp:
        shutil.copyfile(source, tmp)


# --------------------------------------------------------------------------- batch and CLI

MEDIA_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
    ".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus",
}  # fmt: skip
OUTPUT_FOLDER = "videobgm"  # default output folder inside a folder given to `videobgm run`


def output_in(folder: Path, source: Path) -> Path:
    """The default output name for ``source`` inside ``folder``: ``<stem>.videobgm.<ext>``
    (``.wav`` when the source has no video stream)."""
    suffix = source.suffix if media.probe(source).has_video else ".wav"
    return Path(folder) / f"{source.stem}.videobgm{suffix}"


def run_folder(
    folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    **params: Any,
) -> tuple[list[Result], dict[Path, str]]:
    """:func:`run` on every media file in ``folder`` (not recursive); one failure is reported
    and the rest are still done. Outputs go to ``out_dir`` (default ``folder/videobgm/``), run
    folders inside ``runs_dir`` (default ``runs/``). Returns the results and
    ``{file: error sentence}`` for the failures."""

    folder = Path(folder)
    out_dir = paths.ensure_dir(Path(out_dir) if out_dir else folder / OUTPUT_FOLDER)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: has no video or audio files to process")
    results, failures = [], {}
    for number, path in enumerate(files, start=1):
        print(f"videobgm: [{number}/{len(files)}] {path.name}", file=sys.stderr, flush=True)
        try:
            run_dir = Path(runs_dir) / path.stem if runs_dir else None
            results.append(run(path, output_in(out_dir, path), run_dir, **params))
        except VideobgmError as exc:
            failures[path] = str(exc)
            print(f"videobgm: error: {exc}", file=sys.stderr, flush=True)
    return results, failures


def add_cli(subparsers) -> None:
    """``videobgm run VIDEO|FOLDER [...]``."""
    d = RunParams()
    parser = subparsers.add_parser(
        "run", help="give a video (or every video in a folder) new background music",
        description="Transcribe the speech, find its emotions over time, compose music that "
        "follows them, isolate the voice, mix the music under it and mux the mix back into the "
        "video (the picture is copied, never re-encoded). Every stage is cached in a run folder "
        "(runs/), so a re-run resumes and an edited timeline recomputes only the music.",
    )  # fmt: skip
    parser.add_argument("input", help="a video or audio file, or a folder of them")
    parser.add_argument("-o", "--output", help="output file (folder input: output folder)")
    add = parser.add_argument
    add("--profile", default=d.profile, help="models: auto | pretrained | tiny (default auto)")
    add("--music", choices=MUSIC, default=d.music, help="music backend (default auto)")
    add("--variants", type=int, default=d.variants, help="alternative tracks/videos (default 1)")
    add("--seed", type=int, default=d.seed, help="music seed (default 0)")
    add("--separator", choices=SEPARATION, default=d.separator, help="voice isolation")
    add("--target-lufs", type=float, default=d.target_lufs, help="mix loudness (default -14 LUFS)")
    add("--duck-db", type=float, default=d.duck_db, help="music drop under speech (default -12)")
    add("--activity", default=d.activity,
        help="where someone speaks, for ducking: vad (Silero, default) | voice (the isolated "
        "voice's envelope) | transcript, or a union such as vad+transcript")  # fmt: skip
    add("--timeline", help="an edited timeline JSON to use instead of the analysis")
    add("--neutral-policy", default=d.neutral_policy, help="extend | ambient | silence")
    add("--min-span-s", type=float, default=d.min_span_s, help="shortest emotion span (default 5)")
    add("--min-confidence", type=float, default=d.min_confidence, help="default 0.4")
    add("--method", default=d.method, help="timeline method: rules | viterbi (default rules)")
    add("--language", help="spoken language, code or name: en, EN, English (default: detect)")
    add("--sidecar", help="captions (.srt/.vtt) to use instead of transcribing")
    add("--no-sidecar", dest="sidecar", action="store_const", const="",
        help="transcribe even when captions lie beside the video")  # fmt: skip
    add("--steps", type=int, help="riffusion denoising steps")
    add("--lora", default=d.lora, metavar="REF",
        help="riffusion's mood LoRA: a hub id, a folder, or none (default auto: the LoRA "
        "notebook 02 / `videobgm train-lora` trained, when there is one)")  # fmt: skip
    add("--device", help="cpu | cuda (default: CUDA when visible)")
    add("--rank", action="store_true",
        help="score each variant's fit to the timeline (CLAP) and order the outputs best first; "
        "scores go to the run folder's ranking.json and report")  # fmt: skip
    add("--run-dir", help="run folder (default runs/<name>-<hash>/; for a folder: their parent)")
    add("-q", "--quiet", action="store_true", help="no progress lines")
    add("--engine", choices=("local", "ray"), default="local",
        help="local (this process, the default) or ray (a folder's videos on a Ray cluster; "
        "`pip install videobgm[ray]`; the outputs are the local run's)")  # fmt: skip
    add("--address", help="with --engine ray: auto (the cluster `ray start` made), "
        "ray://HOST:10001, or none: $RAY_ADDRESS, else a new Ray on this machine")  # fmt: skip
    add("--gpus-per-stage", metavar="STAGE=SHARE,...",
        help="with --engine ray: GPU share per actor, e.g. transcribe=0.3,generate=0.5 "
        "(stages transcribe, classify, separate, generate; default: from the profile)")  # fmt: skip
    parser.set_defaults(func=_cli_run)


def _cli_run(args) -> int:
    fields = {f.name for f in dataclasses.fields(RunParams)}
    params = {k: v for k, v in vars(args).items() if k in fields}
    if args.engine == "ray":
        from videobgm import engine  # deferred: the engine imports this module

        return engine.cli_run(args, params)
    target = Path(args.input)
    if target.is_dir():
        results, failures = run_folder(
            target, args.output, args.run_dir, progress=not args.quiet, **params
        )
        print(f"\n{len(results)} done, {len(failures)} failed")
        for result in results:
            print(f"  ok    {result.input.name} -> {result.outputs[0]}")
        for path, error in failures.items():
            print(f"  FAIL  {path.name}: {error}")
        return 1 if failures else 0
    result = run(target, args.output, args.run_dir, progress=not args.quiet, **params)
    print("\n".join(f"output: {p}" for p in result.outputs))
    for out, score in zip(result.outputs, result.scores, strict=False):
        print(f"  fit {score['fit']:.4f}  top-1 {score['accuracy']:.2f}  {out.name}"
              f"  (composed as variant {score['variant']})")  # fmt: skip
    print(f"stems beside it, run folder: {result.run_dir} (report: {result.report})")
    return 0

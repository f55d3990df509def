"""From an emotion timeline to a background-music track exactly as long as the video.

:func:`compose` plans each track (:mod:`videobgm.compose.plan`: which clip plays where, with
which prompts, seeds and alphas), renders every clip with one backend, and stitches them:

- ``procedural``: a clip is the synthesiser's seed clip of its nearer keyframe (no weights).
- ``riffusion``: a clip is riffusion img2img from the keyframes' seed spectrograms with
  riffusion's interpolation (:mod:`videobgm.generate`), decoded by the codec and brought to
  its emotion's loudness. All clips of all variants go through the model in one batched pass.

A transition into or out of silence, and every transition of the procedural backend, is an
equal-power crossfade inside the clip, centred where the new emotion begins (snapped to the
new music's beat). Clips are joined by equal-power crossfades one beat long, on the beat grid;
the track gets a short fade-in, a soft limiter, a fade-out, and is cut to the sample.

``variants=N`` makes N tracks with seeds ``seed, seed + 1, ...`` (so variant k of seed s is
variant 0 of seed s + k). A track's plan, written as JSON beside it, regenerates it
(:func:`regenerate`): bit for bit with the procedural backend, and with riffusion on the same
device, model files and batch size (on the CPU the batch size is 1, so clips do not depend on
their batch-mates).

Stitching streams (:func:`stitch_blocks`): each clip is added as it arrives and the track
before it is finished and passed on, so :func:`compose_to_files` writes a procedural track of
any length holding a few clips at a time (riffusion's clips come from one batched pass and are
held, but are stitched and written the same way). :func:`compose` returns whole tracks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from videobgm import generate
from videobgm.compose import plan as compose_plan
from videobgm.compose.plan import Keyframe, Plan, PlannedClip, make_plan
from videobgm.emotion.io import load_timeline
from videobgm.errors import InputError
from videobgm.media import write_audio, write_audio_blocks
from videobgm.metrics import (  # re-exported: compose's click check reads them
    CLICK_FRACTION as CLICK_FRACTION,
)
from videobgm.metrics import (
    CLICK_WIDTH as CLICK_WIDTH,
)
from videobgm.metrics import (
    is_click as is_click,
)
from videobgm.metrics import (
    local_rms as local_rms,
)
from videobgm.metrics import (
    step_excess as step_excess,
)
from videobgm.models import profiles as models
from videobgm.paths import atomic_output
from videobgm.spectrogram import codec as spectrogram
from videobgm.synth import arrange as synth
from videobgm.synth import instruments as ins
from videobgm.vocab import SILENCE

if TYPE_CHECKING:
    from videobgm.models.profiles import ModelProfile

BACKENDS = ("riffusion", "procedural")
TRANSITION_S = 1.0  # s; the crossfade inside a transition clip (procedural, or to silence)


@dataclass(frozen=True)
class Composition:
    """One track: mono float32 audio at ``plan.sample_rate``, its plan, and (riffusion) the
    image of every clip in plan order (None for silent clips)."""

    audio: np.ndarray
    plan: Plan
    images: tuple[Any, ...] | None = None


# --------------------------------------------------------------------------- entry points


def compose(
    timeline: Iterable[Any],
    duration_s: float,
    *,
    device: str | None = None,
    progress: bool = True,
    procedural_images: bool = False,
    **options: Any,
) -> list[Composition]:
    """``variants`` background-music tracks for ``timeline`` (spans with start, end, emotion),
    each exactly ``round(duration_s * 44100)`` samples long. ``options`` are
    :func:`plan_tracks`'s (``music``, ``variants``, ``seed``, ``neutral``, ``profile``,
    ``steps``, ``batch_size``, ``lora_scale``) and :func:`videobgm.compose.plan.make_plan`'s
    (``crossfade_beats``, ``clips_per_prompt``, ``fade_out_s``, ``prompts``)."""
    plans = plan_tracks(timeline, duration_s, device=device, **options)
    return render(plans, device=device, progress=progress, procedural_images=procedural_images)


def compose_to_files(
    timeline: Iterable[Any],
    duration_s: float,
    outputs: Sequence[str | os.PathLike[str]],
    *,
    device: str | None = None,
    progress: bool = True,
    procedural_images: bool = False,
    **options: Any,
) -> list[dict[str, Path]]:
    """:func:`compose` and :func:`write` in one, streamed (:func:`render_to_files`): track
    ``k`` goes to ``outputs[k]`` (one path per variant) with its plan and images beside it.
    ``options`` are :func:`compose`'s. Returns what :func:`write` returns, per track."""
    plans = plan_tracks(timeline, duration_s, device=device, **options)
    return render_to_files(plans, outputs, device, progress, procedural_images)


def plan_tracks(
    timeline: Iterable[Any],
    duration_s: float,
    *,
    music: str = "procedural",
    variants: int = 1,
    seed: int = 0,
    neutral: str = "music",
    profile: str | ModelProfile = "auto",
    steps: int | None = None,
    batch_size: int | None = None,
    lora_scale: float = 1.0,
    device: str | None = None,
    **plan_options: Any,
) -> list[Plan]:
    """The plans of ``variants`` tracks with seeds ``seed, seed + 1, ...``; extra keyword
    arguments go to :func:`videobgm.compose.plan.make_plan`."""
    if music not in BACKENDS:
        raise InputError(f"music must be one of {', '.join(BACKENDS)}, not {music!r}")
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 1:
        raise InputError(f"variants must be a positive integer, not {variants!r}")
    spans = list(timeline)
    settings = _riffusion_settings(profile, steps, batch_size, lora_scale, device, music)
    return [
        make_plan(spans, duration_s, backend=music, seed=seed + k, neutral=neutral,
                  riffusion=settings, **plan_options)
        for k in range(variants)
    ]  # fmt: skip


def regenerate(
    plan: Plan | dict | str | os.PathLike[str], device: str | None = None
) -> Composition:
    """The track a plan (object, dict or JSON file) describes."""
    if isinstance(plan, str | os.PathLike):
        plan = read_plan(plan)
    elif isinstance(plan, dict):
        plan = Plan.from_dict(plan)
    return render([plan], device=device, progress=False)[0]


def render(
    plans: Sequence[Plan],
    device: str | None = None,
    progress: bool = True,
    procedural_images: bool = False,
) -> list[Composition]:
    """Render and stitch plans; riffusion plans share one batched generation pass. Riffusion
    tracks carry their clips' images; procedural ones only with ``procedural_images`` (the
    codec's image of each clip)."""
    out: list[Composition | None] = [None] * len(plans)
    for i, clips, images in _tracks(plans, device, progress):
        clips = list(clips)
        if images is None and procedural_images:
            images = _images_of(clips)
        out[i] = Composition(stitch(plans[i], clips), plans[i], images)
    return out  # type: ignore[return-value]


def render_to_files(
    plans: Sequence[Plan],
    outputs: Sequence[str | os.PathLike[str]],
    device: str | None = None,
    progress: bool = True,
    procedural_images: bool = False,
) -> list[dict[str, Path]]:
    """:func:`render` and :func:`write` in one, each track streamed to its output
    (:func:`write_stream`): procedural clips are made one at a time (with
    ``procedural_images``, each clip's image is written as it is made); riffusion plans share
    one batched generation pass whose clips are held until their track is written."""
    if len(outputs) != len(plans):
        raise InputError(f"{len(plans)} tracks need {len(plans)} output paths, not {len(outputs)}")
    out: list[dict[str, Path] | None] = [None] * len(plans)
    for i, clips, images in _tracks(plans, device, progress):
        path = Path(outputs[i])
        saving = images is None and procedural_images
        if saving:
            clips = _saving_images(clips, _images_folder(path))
        out[i] = write_stream(plans[i], path, clips, images)
        if saving:
            out[i]["images"] = _images_folder(path)
    return out  # type: ignore[return-value]


def _tracks(plans: Sequence[Plan], device: str | None, progress: bool):
    """``(index, clips, images)`` per plan: procedural tracks first, their clips made lazily
    and no images; then the riffusion tracks, from one batched generation pass, each track's
    clips let go once the caller is done with them."""
    for plan in plans:
        if plan.backend not in BACKENDS:
            raise InputError(f"plan backend must be one of {', '.join(BACKENDS)}")
    riff = [i for i, p in enumerate(plans) if p.backend == "riffusion"]
    for i, plan in enumerate(plans):
        if plan.backend == "procedural":
            yield i, iter_procedural_clips(plan), None
    if riff:
        results = _riffusion_render([plans[i] for i in riff], device, progress)
        for i in riff:
            clips, images = results.pop(0)
            yield i, clips, tuple(images)


# --------------------------------------------------------------------------- clips


def _images_of(clips: Sequence[np.ndarray]) -> tuple[Any, ...]:
    return tuple(spectrogram.image_from_audio(clip) if np.any(clip) else None for clip in clips)


def _seed_audio(keyframe: Keyframe | None) -> np.ndarray | None:
    if keyframe is None:
        return None
    return synth.clip(keyframe.emotion, keyframe.synth_seed, keyframe.variation)


def _keyframes(plan: Plan, clip: PlannedClip) -> tuple[Keyframe | None, Keyframe | None]:
    def get(index: int | None) -> Keyframe | None:
        return None if index is None else plan.keyframes[index]

    return get(clip.start), get(clip.end)


def _is_transition(plan: Plan, clip: PlannedClip) -> bool:
    start, end = _keyframes(plan, clip)
    return _emotion(start) != _emotion(end)


def _emotion(keyframe: Keyframe | None) -> str:
    return SILENCE if keyframe is None else keyframe.emotion


def procedural_clips(plan: Plan) -> list[np.ndarray]:
    """Every clip of a plan as the procedural backend plays it, before stitching (read-only
    arrays of ``plan.clip_samples``)."""
    return list(iter_procedural_clips(plan))


def iter_procedural_clips(plan: Plan) -> Iterator[np.ndarray]:
    """:func:`procedural_clips` one at a time, each made when it is asked for."""
    return (_procedural_clip(plan, clip) for clip in plan.clips)


def _procedural_clip(plan: Plan, clip: PlannedClip) -> np.ndarray:
    start, end = _keyframes(plan, clip)
    if not _is_transition(plan, clip):
        return _or_silence(_seed_audio(start if clip.alpha < 0.5 else end), plan)
    return _crossfade_inside(plan, clip, _seed_audio(start), _seed_audio(end))


def _or_silence(audio: np.ndarray | None, plan: Plan) -> np.ndarray:
    return np.zeros(plan.clip_samples, np.float32) if audio is None else audio


def _crossfade_inside(
    plan: Plan, clip: PlannedClip, old: np.ndarray | None, new: np.ndarray | None
) -> np.ndarray:
    """``old`` then ``new`` in one clip: an equal-power crossfade of :data:`TRANSITION_S`
    centred on the change, snapped to the incoming music's beat (both start on a downbeat)."""
    n = plan.clip_samples
    _, end = _keyframes(plan, clip)
    beat = compose_plan.beat_samples(_emotion(end), plan.sample_rate)
    centre = clip.change_sample if clip.change_sample is not None else n // 2
    if end is not None:
        centre = round(centre / beat) * beat
    length = min(round(TRANSITION_S * plan.sample_rate), n)
    begin = min(max(centre - length // 2, 0), n - length)
    phase = np.clip((np.arange(n) - begin + 0.5) / length, 0.0, 1.0) * (np.pi / 2)
    out = np.zeros(n, np.float32)
    if old is not None:
        out += np.cos(phase).astype(np.float32) * old
    if new is not None:
        out += np.sin(phase).astype(np.float32) * new
    return out


def _riffusion_settings(profile, steps, batch_size, lora_scale, device, music) -> dict[str, Any]:
    if music != "riffusion":
        return {}

    resolved = models.resolve_profile(profile)
    device = device or models.default_device()
    if batch_size is None:
        batch_size = generate.DEFAULT_BATCH if device.startswith("cuda") else 1
    lora, lora_required = generate.resolve_lora(resolved.lora)  # "auto" made concrete
    return {
        "diffusion": resolved.diffusion,
        "diffusion_revision": resolved.diffusion_revision,
        "lora": lora,
        "lora_required": lora_required,
        "lora_scale": float(lora_scale),
        "steps": int(steps or generate.DEFAULT_STEPS),
        "batch_size": int(batch_size),
        "scheduler": "DPMSolverMultistepScheduler",
        "device": device,  # for the record: other devices give other rounding
    }


def _riffusion_render(plans: Sequence[Plan], device: str | None, progress: bool):
    """Every plan's clips as audio and images, with one batched pass per model setting."""

    key = {json.dumps(p.riffusion, sort_keys=True) for p in plans}
    if len(key) != 1:
        raise InputError("plans rendered together must share their riffusion settings")
    cfg = plans[0].riffusion
    riff = generate.riffusion_from_refs(
        cfg["diffusion"], cfg.get("lora"), device=device, lora_scale=cfg.get("lora_scale", 1.0),
        revision=cfg.get("diffusion_revision"), lora_required=cfg.get("lora_required", True),
    )  # fmt: skip
    wanted: dict[tuple, int] = {}  # identical requests (across variants too) run once
    requests = []
    for plan in plans:
        for clip in plan.clips:
            ask = _riffusion_request(plan, clip)
            if ask is not None and ask not in wanted:
                wanted[ask] = len(requests)
                requests.append(_clip_request(generate, *ask))
    images = riff.generate(requests, steps=cfg["steps"], batch_size=cfg["batch_size"],
                           progress=progress)  # fmt: skip
    audio = generate.images_to_audio(images, device, cfg["batch_size"], progress)
    results = []
    for plan in plans:
        clips, clip_images = [], []
        for clip in plan.clips:
            ask = _riffusion_request(plan, clip)
            index = wanted.get(ask) if ask is not None else None
            sound = None if index is None else _level(audio[index], ask, plan)
            clip_images.append(None if index is None else images[index])
            clips.append(_place_riffusion(plan, clip, sound))
        results.append((clips, clip_images))
    return results


def _riffusion_request(plan: Plan, clip: PlannedClip) -> tuple | None:
    """(start keyframe, end keyframe, alpha) to generate for a clip; None for silence. A
    transition to or from silence generates its music side alone (alpha 0)."""
    start, end = _keyframes(plan, clip)
    if start is None and end is None:
        return None
    if start is None or end is None:
        only = start or end
        return (only, only, 0.0)
    return (start, end, float(clip.alpha))


def _clip_request(generate: Any, start: Keyframe, end: Keyframe, alpha: float) -> Any:
    def prompt(k: Keyframe) -> Any:
        return generate.PromptInput(k.prompt, k.seed, k.strength, k.guidance_scale,
                                    k.negative_prompt)  # fmt: skip

    image = generate.seed_image(start.emotion, start.synth_seed, start.variation)
    end_image = generate.seed_image(end.emotion, end.synth_seed, end.variation)
    return generate.ClipRequest(prompt(start), prompt(end), image, alpha, end_image)


def _level(audio: np.ndarray, ask: tuple, plan: Plan) -> np.ndarray:
    """A generated clip at the loudness of its emotion's style (dB interpolated by alpha),
    exactly one clip long."""
    start, end, alpha = ask
    n = plan.clip_samples
    audio = np.asarray(audio, np.float32)[:n]
    audio = np.pad(audio, (0, n - len(audio)))
    levels = synth.STYLES[start.emotion].level_db, synth.STYLES[end.emotion].level_db
    db = (1 - alpha) * levels[0] + alpha * levels[1]
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms > 1e-9:
        audio = audio * np.float32(10 ** (db / 20) / rms)
    return audio


def _place_riffusion(plan: Plan, clip: PlannedClip, sound: np.ndarray | None) -> np.ndarray:
    start, end = _keyframes(plan, clip)
    if start is not None and end is not None:
        return sound  # type: ignore[return-value]
    if start is None and end is None:
        return _or_silence(None, plan)
    return _crossfade_inside(plan, clip, sound if start else None, sound if end else None)


# --------------------------------------------------------------------------- stitching


def equal_power(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-in and fade-out gains of ``length`` samples whose squares sum to 1."""
    phase = (np.arange(length) + 0.5) / max(length, 1) * (np.pi / 2)
    return np.sin(phase).astype(np.float32), np.cos(phase).astype(np.float32)


def stitch(plan: Plan, clips: Iterable[np.ndarray]) -> np.ndarray:
    """Overlap-add the clips at their places with equal-power crossfades; fade in, limit,
    fade out; exactly ``plan.samples`` samples (mono float32). The whole track at once:
    :func:`stitch_blocks` gives it block by block."""
    out = np.empty(plan.samples, np.float32)
    done = 0
    for block in stitch_blocks(plan, clips):
        out[done : done + len(block)] = block
        done += len(block)
    return out


def stitch_blocks(plan: Plan, clips: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """:func:`stitch` as a stream of mono float32 blocks, ``plan.samples`` in all. Clips come
    in plan order (so by start); each is added as it arrives, and the track before its
    start, which no later clip reaches, is limited, faded and yielded. Holds about one clip of
    the track whatever its length; ``clips`` may be a generator."""
    n = plan.clip_samples
    first_fade = min(round(plan.fade_in_s * plan.sample_rate), n)
    finish = _finisher(plan)
    track = np.zeros(0, np.float32)  # the sum of the clips so far, from sample `done` on
    done = 0
    for index, (clip, audio) in enumerate(zip(plan.clips, clips, strict=True)):
        if len(audio) != n:
            raise ValueError(f"clip {index} has {len(audio)} samples, not {n}")
        if clip.start_sample < done:
            raise ValueError(f"clip {index} starts before clip {index - 1}; need plan order")
        track, done = yield from _emit(track, done, min(clip.start_sample, plan.samples), n, finish)
        gain = _clip_gain(n, clip.fade_in if index else first_fade, clip.fade_out)
        offset = clip.start_sample - done
        if len(track) < offset + n:
            track = np.concatenate([track, np.zeros(offset + n - len(track), np.float32)])
        track[offset : offset + n] += gain * audio
    yield from _emit(track, done, plan.samples, n, finish)  # the last clip's rest


def _emit(track: np.ndarray, done: int, until: int, n: int, finish: Callable):
    """Yield the finished track from sample ``done`` (``track[0]``) to ``until``, in blocks of
    at most ``n`` or what ``track`` holds, silence where it ends (where no clip plays).
    Returns the rest of ``track`` and the new ``done``."""
    while done < until:
        size = min(until - done, max(len(track), n))
        block = track[:size] if len(track) >= size else np.pad(track, (0, size - len(track)))
        yield finish(block, done)
        track, done = track[size:], done + size
    return track, done


def _clip_gain(n: int, fade_in: int, fade_out: int) -> np.ndarray:
    gain = np.ones(n, np.float32)
    if fade_in:
        gain[:fade_in] = equal_power(fade_in)[0]
    if fade_out:
        gain[n - fade_out :] *= equal_power(fade_out)[1]
    return gain


def _finisher(plan: Plan) -> Callable[[np.ndarray, int], np.ndarray]:
    """``finish(block, start)``: the soft limiter, and the track's raised-cosine fade-out over
    its last ``plan.fade_out_s`` where the block (starting at sample ``start``) reaches it."""
    length = min(plan.samples, round(max(plan.fade_out_s, 0.0) * plan.sample_rate))
    fade_start = plan.samples - length
    ramp = (0.5 * (1 + np.cos(np.pi * np.arange(1, length + 1) / max(length, 1)))).astype(
        np.float32
    )

    def finish(block: np.ndarray, start: int) -> np.ndarray:
        out = ins.limit(block).astype(np.float32)
        begin = max(start, fade_start)
        if begin < start + len(out):
            out[begin - start :] *= ramp[begin - fade_start : start + len(out) - fade_start]
        return out

    return finish


# --------------------------------------------------------------------------- clicks


def join_points(plan: Plan) -> list[int]:
    """Every sample where a clip starts or ends, and where a transition's crossfade starts and
    ends (the places where stitching could click)."""
    points = set()
    half = round(TRANSITION_S * plan.sample_rate / 2)
    for clip in plan.clips:
        points.update((clip.start_sample, clip.start_sample + plan.clip_samples))
        if clip.change_sample is not None:
            points.update(clip.start_sample + clip.change_sample + d for d in (-half, half))
    return sorted(p for p in points if 0 < p < plan.samples)


def count_clicks(
    audio: np.ndarray, plan: Plan, clips: Sequence[np.ndarray] | None = None,
    fraction: float = CLICK_FRACTION,
) -> int:  # fmt: skip
    """Clicks (:func:`is_click`) at the :func:`join_points` of a stitched track; ``clips``
    are the plan's clips before stitching (default: the procedural backend's)."""
    clips = procedural_clips(plan) if clips is None else clips
    count = 0
    for at in join_points(plan):
        own = sum(
            max(step_excess(clip_audio, at - clip.start_sample), 0.0)
            for clip, clip_audio in zip(plan.clips, clips, strict=True)
            if clip.start_sample <= at <= clip.start_sample + plan.clip_samples
        )
        count += is_click(audio, at, own, plan.sample_rate, fraction)
    return count


# --------------------------------------------------------------------------- files


def read_plan(path: str | os.PathLike[str]) -> Plan:
    try:
        return Plan.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the composition plan ({exc})") from None


def output_paths(output: str | os.PathLike[str], variants: int) -> list[Path]:
    """``bgm.wav`` for one track; ``bgm-1.wav`` ... ``bgm-N.wav`` for N variants."""
    path = Path(output)
    if variants == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{k}{path.suffix}") for k in range(1, variants + 1)]


def write(composition: Composition, output: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the track (``bgm.wav``, 44.1 kHz), its plan (``bgm.plan.json``) and its clip
    images (``bgm.clips/clip-000.png`` ...), each atomically. Returns what was written."""

    path = Path(output)
    written = {"audio": write_audio(path, composition.audio, composition.plan.sample_rate)}
    return written | _write_beside(composition.plan, path, composition.images)


def write_stream(
    plan: Plan,
    output: str | os.PathLike[str],
    clips: Iterable[np.ndarray] | None = None,
    images: Sequence[Any] | None = None,
) -> dict[str, Path]:
    """:func:`write` for a track stitched block by block as it is written
    (:func:`stitch_blocks`), never whole: ``clips`` in plan order (default: the procedural
    backend's, each made when the writer reaches it) and, optionally, their ``images``."""

    path = Path(output)
    clips = iter_procedural_clips(plan) if clips is None else clips
    blocks = stitch_blocks(plan, clips)
    written = {"audio": write_audio_blocks(path, blocks, plan.sample_rate)}
    return written | _write_beside(plan, path, images)


def _write_beside(plan: Plan, path: Path, images: Sequence[Any] | None) -> dict[str, Path]:
    """The plan (``<stem>.plan.json``) and the clip images (``<stem>.clips/``) of a track."""

    plan_path = path.with_name(f"{path.stem}.plan.json")
    with atomic_output(plan_path) as tmp:
        tmp.write_text(json.dumps(plan.to_dict(), indent=1), encoding="utf-8")
    written = {"plan": plan_path}
    if images:
        folder = _images_folder(path)
        for index, image in enumerate(images):
            if image is not None:
                _save_image(image, folder, index)
        written["images"] = folder
    return written


def _images_folder(path: Path) -> Path:
    return path.with_name(f"{path.stem}.clips")


def _save_image(image: Any, folder: Path, index: int) -> None:
    with atomic_output(folder / f"clip-{index:03d}.png") as tmp:
        image.save(tmp)


def _saving_images(clips: Iterable[np.ndarray], folder: Path) -> Iterator[np.ndarray]:
    """The clips, each one's image (as :func:`_images_of` makes it) written on the way."""

    for index, clip in enumerate(clips):
        if np.any(clip):
            _save_image(spectrogram.image_from_audio(clip), folder, index)
        yield clip


# --------------------------------------------------------------------------- command line


def add_cli(subparsers) -> None:
    """``videobgm compose TIMELINE.json --duration S [--music ...] [--variants N] -o bgm.wav``."""
    parser = subparsers.add_parser(
        "compose",
        help="compose background music for an emotion timeline (or re-render a plan)",
        description=(
            "Compose a background-music track exactly DURATION seconds long from an emotion "
            "timeline (JSON list of {start, end, emotion, confidence}). Writes the WAV, its "
            "plan (OUTPUT stem + .plan.json, which --plan re-renders exactly) and, with "
            "riffusion, the clip images (OUTPUT stem + .clips/)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: videobgm compose timeline.json --duration 62.5 --variants 4 -o bgm.wav",
    )
    parser.add_argument("timeline", nargs="?", metavar="TIMELINE.json", help="emotion timeline")
    parser.add_argument("--plan", help="re-render this plan instead of composing a timeline")
    parser.add_argument("--duration", type=float, help="seconds (default: the timeline's end)")
    parser.add_argument("--music", choices=BACKENDS, default="procedural", help="backend")
    parser.add_argument("--variants", type=int, default=1, help="alternative tracks (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first track")
    parser.add_argument("--neutral", choices=compose_plan.NEUTRAL_CHOICES, default="music",
                        help="neutral spans: calm music or silence (default music)")  # fmt: skip
    parser.add_argument("--profile", default="auto", help="auto | pretrained | tiny")
    parser.add_argument("--steps", type=int, default=None, help="riffusion denoising steps")
    parser.add_argument("--batch-size", type=int, default=None, help="riffusion clips per batch")
    parser.add_argument("--lora-scale", type=float, default=1.0, help="mood LoRA weight")
    parser.add_argument("--lora", default=None, metavar="REF",
                        help="riffusion's mood LoRA: a hub id, a folder, or none (default: "
                        "the one notebook 02 trained, when there is one)")  # fmt: skip
    parser.add_argument("--images", action="store_true",
                        help="procedural: write the clips' spectrogram images too")  # fmt: skip
    parser.add_argument("-o", "--output", required=True, help="output .wav (or .flac)")
    parser.set_defaults(func=_cli_compose)


def _with_lora(profile: str, lora: str | None):
    """The profile, with ``--lora`` in place of its LoRA when one was given."""

    if lora is None:
        return profile
    return dataclasses.replace(models.resolve_profile(profile), lora=lora)


def _cli_compose(args) -> int:
    if args.plan:
        plans = [read_plan(args.plan)]
    else:
        if not args.timeline:
            raise InputError("give a TIMELINE.json to compose, or --plan to re-render")

        spans = load_timeline(args.timeline, args.duration)  # checked: contiguous, covering
        duration = args.duration if args.duration is not None else spans[-1].end
        plans = plan_tracks(
            spans, duration, music=args.music, variants=args.variants, seed=args.seed,
            neutral=args.neutral, profile=_with_lora(args.profile, args.lora), steps=args.steps,
            batch_size=args.batch_size, lora_scale=args.lora_scale,
        )  # fmt: skip
    outputs = output_paths(args.output, len(plans))
    written = render_to_files(plans, outputs, procedural_images=args.images)  # streamed
    for plan, files in zip(plans, written, strict=True):
        print(f"{files['audio']}: {plan.duration_s:.3f} s, {len(plan.clips)} clips "
              f"({plan.backend}, seed {plan.seed}); plan {files['plan']}")  # fmt: skip
    return 0

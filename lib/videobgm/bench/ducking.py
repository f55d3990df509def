"""Ducking on noisy talking scenes (issue 18): does the music follow the speech?

A scene is ``data/samples/dialogue.flac`` (four espeak-ng speakers, pauses of 0.8-1.5 s, the
turns' exact times in ``dialogue.srt``) over a quiet chord bed with a beat and white noise at
a given dBFS, as a phone recording has. The bed is made here from random (untempered) chords,
not by the project's synthesiser: the new music comes from that synthesiser, and a bed in the
same keys would leak into the isolated voice *correlated* with the new music, which the
measurement below would count as music. The voice is isolated by the project's spectral
separator (residual noise and all, as in a run), new music is mixed under it, and the music's
level in the final mix is measured against the music stem (its least-squares gain: the voice
is independent of the music) in the middle of the pauses and inside the turns.

Rows: speech-activity real-time factor, and ducking depth by noise level before (voice
envelope) and after (Silero VAD); the bar is 10 dB.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videobgm import media, mix, paths, pipeline, separate, vad
from videobgm.bench.core import in_section, row
from videobgm.synth import arrange as synth
from videobgm.transcribe import read_captions

RATE = 44100  # Hz; the pipeline's rate
BED_DBFS = -32.0  # RMS of the old music bed under the original speech
NOISE_LEVELS_DBFS = (-40.0, -35.0, -30.0)  # RMS of the broadband noise
DEPTH_BAR_DB = 10.0  # music in pauses at least this much above the music under speech
INNER_MARGIN_S = 0.2  # s trimmed off each turn's ends when measuring "under speech"


@dataclass(frozen=True)
class Scene:
    """A noisy talking scene and its parts, all mono float32 at :data:`RATE`."""

    original: np.ndarray  # speech + old bed + noise: what the video's audio track holds
    voice: np.ndarray  # the voice isolated from ``original`` by the spectral separator
    music: np.ndarray  # the new music to mix under it
    turns: tuple[tuple[float, float], ...]  # (start_s, end_s) of every spoken turn (truth)


def dialogue_turns() -> tuple[tuple[float, float], ...]:
    """The turns' times, read from ``dialogue.srt``."""

    return tuple((s.start, s.end) for s in read_captions(paths.samples() / "dialogue.srt"))


def noisy_scene(noise_dbfs: float, seed: int = 0, emotion: str = "joy") -> Scene:
    """The dialogue over a chord bed at :data:`BED_DBFS` and noise at ``noise_dbfs`` (RMS);
    its voice isolated; new ``emotion`` music as long as it."""

    speech = media.decode_audio(paths.samples() / "dialogue.flac", RATE)
    seconds = len(speech) / RATE
    bed = chord_bed(len(speech), RATE, seed + 11)
    bed *= 10 ** (BED_DBFS / 20) / _rms(bed)
    noise = np.random.default_rng(seed).standard_normal(len(speech)).astype(np.float32)
    original = speech + bed + noise * np.float32(10 ** (noise_dbfs / 20))
    voice = separate.separate(original, RATE, "spectral")
    music = synth.render(emotion, seconds, seed=seed + 1)[: len(speech)]
    return Scene(original, voice, music, dialogue_turns())


CHORD_S = 2.0  # s per chord of the old bed
BEAT_S = 0.5  # s between the bed's kicks


def chord_bed(n: int, rate: int, seed: int) -> np.ndarray:
    """A chord bed with a beat: three random untempered sines (110-660 Hz) per chord, and a
    decaying 60 Hz kick every :data:`BEAT_S`; float32, ``n`` samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    chord = (t // CHORD_S).astype(np.int64)
    freqs = rng.uniform(110.0, 660.0, size=(int(chord[-1]) + 1, 3))
    bed = sum(np.sin(2 * np.pi * freqs[chord, k] * t) for k in range(3))
    since_kick = t % BEAT_S
    bed = bed + 2.0 * np.sin(2 * np.pi * 60.0 * since_kick) * np.exp(-since_kick / 0.08)
    return bed.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def pauses(turns: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The middle half of every pause between two turns."""
    out = []
    for (_, end), (start, _) in zip(turns[:-1], turns[1:], strict=True):
        quarter = (start - end) / 4
        out.append((end + quarter, start - quarter))
    return out


def inside(turns: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Every turn without :data:`INNER_MARGIN_S` at either end."""
    return [(a + INNER_MARGIN_S, b - INNER_MARGIN_S) for a, b in turns]


def music_level_db(
    mixed: np.ndarray, music: np.ndarray, regions: Sequence[tuple[float, float]], rate: int
) -> float:
    """The music's gain in ``mixed`` over ``regions`` (s), in dB: the least-squares
    coefficient of the music stem in the mix (the voice, independent of the music, averages
    out). ``mixed`` may be ``(channels, samples)``: its first channel is used."""
    mixed = np.asarray(mixed)[0] if np.ndim(mixed) == 2 else np.asarray(mixed)
    take = np.zeros(len(music), bool)
    for a, b in regions:
        take[max(int(a * rate), 0) : max(int(b * rate), 0)] = True
    m, y = music[take].astype(np.float64), mixed[take].astype(np.float64)
    gain = float(np.dot(y, m) / max(np.dot(m, m), 1e-20))
    return 20 * float(np.log10(max(abs(gain), 1e-10)))


def ducking_depth_db(mixed: np.ndarray, scene: Scene, rate: int = RATE) -> float:
    """How much louder the music is in the pauses than under speech, in dB."""
    turns = scene.turns
    return music_level_db(mixed, scene.music, pauses(turns), rate) - music_level_db(
        mixed, scene.music, inside(turns), rate
    )


def mix_scene(scene: Scene, activity: str) -> np.ndarray:
    """The scene's final mix with speech activity from ``activity`` (VAD on the original
    audio, as the pipeline runs it)."""

    speech = vad.detect_array(scene.original, RATE) if "vad" in activity else ()
    params = mix.MixParams(activity=activity)
    return mix.mix(scene.voice, scene.music, RATE, params, speech=speech).mix


def clean_speech_spans(audio: np.ndarray, rate: int, gap_s: float = 0.3) -> list[tuple]:
    """Where clean speech (no music, no noise) sounds: 10 ms frames within 40 dB of the
    loudest, gaps shorter than ``gap_s`` closed. The truth for a recording without captions."""
    hop = rate // 100
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    loud = np.flatnonzero(level > level.max() - 40.0)
    breaks = np.flatnonzero(np.diff(loud) > gap_s * 100)
    firsts = np.concatenate([[loud[0]], loud[breaks + 1]])
    lasts = np.concatenate([loud[breaks], [loud[-1]]])
    return [(a / 100, (b + 1) / 100) for a, b in zip(firsts, lasts, strict=True)]


def boundary_rows() -> list[dict]:
    """How far each of Silero's span edges is from the nearest true start (or end) of speech,
    on the demo video (truth: its clean voice, ``story.voice.flac``) and on ``heldout.flac``
    (truth: itself, clean), both by :func:`clean_speech_spans`: where a Whisper boundary
    snapped to that edge lands."""

    rows = []
    for name, clean in (("story.mp4", "story.voice.flac"), ("heldout.flac", "heldout.flac")):
        path = paths.samples() / name
        truth = clean_speech_spans(media.decode_audio(paths.samples() / clean, RATE), RATE)
        found = vad.detect_file(path)
        starts, ends = vad.edge_errors(truth, found)  # truth minus the nearest found edge
        for which, err in (("start", -starts), ("end", -ends)):
            rows.append(row(
                f"VAD {which} error, {name}", "s", float(np.max(np.abs(err))), None,
                kind="quality", note=f"max over {len(found)} detected spans ({len(truth)} "
                f"true); median {float(np.median(err)):+.3f} s (positive: late)",
            ))  # fmt: skip
    return rows


CONTAINERS = {  # a talking video's codecs by container: what phones and browsers record
    ".mp4": ["-c:v", "libx264", "-c:a", "aac"],
    ".webm": ["-c:v", "libvpx", "-c:a", "libopus"],
}
TALK_NOISE_DBFS = -34.0  # the end-to-end scene's noise


def talking_video(scene: Scene, path: Path) -> Path:
    """A small grey video whose audio is ``scene.original``, in ``path``'s container."""

    soundtrack = media.write_audio(path.with_suffix(".source.wav"), scene.original, RATE)
    seconds = len(scene.original) / RATE
    media.run_ffmpeg(
        ["-y", "-f", "lavfi", "-i", f"color=c=gray:s=64x48:r=10:d={seconds:.3f}",
         "-i", str(soundtrack), *CONTAINERS[path.suffix], "-b:a", "128k", "-shortest",
         str(path)], path, "making the test video",
    )  # fmt: skip
    return path


def delivered_depth_db(result, scene: Scene) -> float:
    """:func:`ducking_depth_db` of a run's delivered file, decoded, against its music stem."""
    import dataclasses

    audio = media.decode_audio(result.outputs[0], RATE)
    bgm = media.decode_audio(result.bgm[0], RATE)[: len(audio)]
    return ducking_depth_db(audio[: len(bgm)], dataclasses.replace(scene, music=bgm))


def delivered_rows() -> list[dict]:
    """``videobgm run`` on a noisy talking video (mp4 and webm): the issue's bar, measured on
    the decoded delivered file."""
    import json
    import tempfile

    scene, rows = noisy_scene(TALK_NOISE_DBFS), []
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in CONTAINERS:
            video = talking_video(scene, Path(tmp) / f"talk{suffix}")
            result = pipeline.run(video, Path(tmp) / "out" / video.name,
                                  run_dir=Path(tmp) / f"run{suffix}", progress=False)  # fmt: skip
            (record,) = json.loads(result.delivered.read_text())
            loud = mix.loudness(media.decode_audio(result.outputs[0], RATE, mono=False), RATE)
            depth = delivered_depth_db(result, scene)
            rows.append(row(
                f"delivered {suffix[1:]}: true peak / loudness / ducking depth", "dBTP",
                record["true_peak_db"], None, kind="quality", bar="<= -1 dBTP, -14 +-0.5, >= 10",
                meets_bar=record["true_peak_db"] <= -1.0 and abs(loud + 14) <= 0.5
                and depth >= DEPTH_BAR_DB,
                note=f"decoded: {loud:.2f} LUFS, music {depth:.1f} dB lower under speech; "
                f"{record['reencodes']} re-encode(s), limiter at {record['limiter_ceiling_db']}",
            ))  # fmt: skip
    return rows


def bench_ducking(
    repeats: int = 1, device: str | None = None, full: bool = False,
    noise_levels: Sequence[float] = NOISE_LEVELS_DBFS,
) -> list[dict]:  # fmt: skip
    """Rows: the VAD's real-time factor; the ducking depth per noise level, Silero VAD
    (ours) against the voice envelope (the baseline, what the mix used before)."""

    rows = []
    for level in noise_levels:
        scene = noisy_scene(level)
        after = ducking_depth_db(mix_scene(scene, "vad"), scene)
        before = ducking_depth_db(mix_scene(scene, "voice"), scene)
        rows.append(row(
            f"ducking depth, noise at {level:g} dBFS", "dB", after, before, kind="quality",
            bar=f">= {DEPTH_BAR_DB:g} dB", meets_bar=after >= DEPTH_BAR_DB,
            note="music in pauses minus music under speech, measured on the mix against the "
            "music stem; baseline: activity from the isolated voice's envelope",
        ))  # fmt: skip
    model, audio = vad.load_model(), scene.original  # the last scene's
    start = time.perf_counter()
    vad.detect_array(audio, RATE, model=model)
    seconds = time.perf_counter() - start
    rows.append(row(
        "speech activity (Silero VAD) real-time factor", "x", len(audio) / RATE / seconds, None,
        higher_is_better=True,
        note=f"{len(audio) / RATE:.1f} s of 44.1 kHz audio, resampled to 16 kHz, "
        f"in {seconds:.2f} s on one thread",
    ))  # fmt: skip
    return in_section("ducking", rows + boundary_rows() + delivered_rows())

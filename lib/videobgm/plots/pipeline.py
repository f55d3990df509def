"""Figures of a pipeline run (notebook 04 and the run report): the emotion timeline over the
voice and the new music, and the small markdown report every run folder gets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from videobgm import media, paths, vad
from videobgm.emotion import io as timeline_io
from videobgm.mix import array_reader, duck_curve
from videobgm.plots.emotion import EMOTION_COLORS
from videobgm.spectrogram import codec as spectrogram
from videobgm.transcribe import load_transcript
from videobgm.vocab import CLIP_SECONDS, SAMPLE_RATE

_BINS = 1500  # columns of a drawn waveform envelope


def waveform_envelope(audio, sample_rate: int, bins: int = _BINS):
    """``(times_s, low, high)``: the minimum and maximum of each of ``bins`` equal stretches of
    mono audio, an array or a WAV/FLAC path (read a piece at a time, so an hour-long file costs
    no more memory than a short one)."""

    if isinstance(audio, np.ndarray):
        return _min_max(array_reader(audio), audio.size, sample_rate, bins)
    with media.AudioReader(audio) as read:
        return _min_max(read, read.length, read.sample_rate, bins)


def _min_max(read, n: int, sample_rate: int, bins: int):
    bins = max(1, min(bins, n))
    width = max(n // bins, 1)
    low, high = np.zeros(bins, np.float32), np.zeros(bins, np.float32)
    per_read = max(1, (1 << 18) // width)  # bins read at a time
    for first in range(0, bins, per_read):
        last = min(first + per_read, bins)
        block = read(first * width, last * width).reshape(last - first, width)
        low[first:last], high[first:last] = block.min(axis=1), block.max(axis=1)
    return (np.arange(bins) + 0.5) * width / sample_rate, low, high


def plot_run(spans, voice, music, sample_rate: int = SAMPLE_RATE, title: str = ""):
    """The timeline as coloured bands over the waveforms of the isolated voice and the new
    music (arrays at ``sample_rate``, or WAV/FLAC paths): where the music follows the
    emotions, and where the words are."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(12, 4.2), sharex=True, gridspec_kw={"height_ratios": [1, 3]}
    )
    for span in spans:
        top.axvspan(span.start, span.end, color=EMOTION_COLORS[span.emotion], ec="0.4", lw=0.6)
        top.text((span.start + span.end) / 2, 0.5, span.emotion, ha="center", va="center",
                 fontsize=8)  # fmt: skip
    top.set_yticks([])
    top.set_title(title or "emotion timeline, voice and new music")
    end = spans[-1].end if spans else 0.0  # the timeline covers the whole video
    for audio, color, label in ((music, "tab:orange", "new music"), (voice, "0.25", "voice")):
        times, low, high = waveform_envelope(audio, sample_rate)
        bottom.fill_between(times, low, high, color=color, lw=0, label=label)
        end = max(end, float(times[-1]))
    bottom.set_xlim(0, end)
    bottom.set_xlabel("time (s)")
    bottom.set_yticks([])
    bottom.legend(loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def music_level(mixed, music, window_s: float = 0.3):
    """``(times_s, level_dbfs)``: the music's level in a mix, window by window, measured
    against the music stem (WAV/FLAC paths): the stem's level times its least-squares gain in
    the mix (the voice, independent of the music, averages out). Read a piece at a time."""

    with media.AudioReader(mixed) as mix_read, media.AudioReader(music, mix_read.length) as bgm:
        hop = max(int(window_s * bgm.sample_rate), 1)
        count = mix_read.length // hop
        levels = np.full(count, -120.0)
        per_read = max(1, (1 << 18) // hop)
        for first in range(0, count, per_read):
            last = min(first + per_read, count)
            m = bgm(first * hop, last * hop).reshape(-1, hop).astype(np.float64)
            y = mix_read(first * hop, last * hop).reshape(-1, hop).astype(np.float64)
            power = np.einsum("ij,ij->i", m, m)
            gain = np.einsum("ij,ij->i", y, m) / np.maximum(power, 1e-20)
            level = np.abs(gain) * np.sqrt(power / hop)
            levels[first:last] = 20 * np.log10(np.maximum(level, 1e-6))
        return (np.arange(count) + 0.5) * hop / bgm.sample_rate, levels


def plot_ducking(speech, mixed, music, params=None, segments=(), title: str = ""):
    """Where the music went down: the speech spans (and transcript segments), the ducking
    gain the mix applied, and the music's level in the final mix, measured against the stem
    (``mixed`` and ``music``: WAV/FLAC paths)."""
    import matplotlib.pyplot as plt

    times, level = music_level(mixed, music)
    duration = float(times[-1]) if len(times) else 0.0
    fig, (spans_ax, gain_ax, level_ax) = plt.subplots(
        3, 1, figsize=(12, 4.6), sharex=True, gridspec_kw={"height_ratios": [1, 2, 2]}
    )
    for start, end in segments:
        spans_ax.axvspan(start, end, ymin=0.0, ymax=0.45, color="tab:blue", alpha=0.5, lw=0)
    for start, end in speech:
        spans_ax.axvspan(start, end, ymin=0.55, ymax=1.0, color="0.25", lw=0)
    spans_ax.set_yticks([0.25, 0.75], ["transcript", "speech (VAD)"])
    spans_ax.set_title(title or "ducking: speech, the music's gain, the music's level in the mix")
    gain_t, gain_db = duck_curve(speech, duration, params)
    gain_ax.plot(gain_t, gain_db, color="tab:orange", lw=1)
    gain_ax.set_ylabel("duck gain (dB)")
    level_ax.plot(times, level, color="tab:green", lw=1)
    level_ax.set_ylim(max(float(np.percentile(level, 2)) - 6, -90), float(level.max()) + 3)
    level_ax.set_ylabel("music in mix (dBFS)")
    level_ax.set_xlabel("time (s)")
    level_ax.set_xlim(0, duration)
    fig.tight_layout()
    return fig


def write_report(folder: Path, source: Path, info, music: str, out: Path, figure: Path) -> None:
    """``report.md`` and ``timeline.png`` in a run folder, from the files the stages wrote."""
    import matplotlib.pyplot as plt  # the figure is closed after saving: never shown

    spans = timeline_io.load_timeline(folder / paths.RUN_TIMELINE)
    bgm = sorted(folder.glob("bgm*.wav"))
    fig = plot_run(spans, folder / paths.RUN_VOICE, bgm[0])
    with paths.atomic_output(figure) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    ducking = _ducking_figure(folder, figure.with_name("ducking.png"))
    stages = json.loads((folder / paths.RUN_STAGES).read_text())
    lines = [
        f"# videobgm run: {source.name}", "",
        f"- input: `{source}` ({info.duration_s:.2f} s, "
        f"{'video + ' if info.has_video else ''}{'audio' if info.has_audio else 'no audio'})",
        f"- music backend: {music}; variants: {len(bgm)}", "",
        f"![timeline]({figure.name})", "", "## Emotion timeline", "", "```",
        timeline_io.format_table(spans), "```", "", *ducking, *_delivered_lines(folder),
        "## Stages", "",
        "| stage | seconds | finished |", "| --- | --- | --- |",
        *(f"| {name} | {r['seconds']} | {r['finished']} |" for name, r in stages.items()),
    ]  # fmt: skip
    with paths.atomic_output(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_ducking_result(result, title: str = ""):
    """:func:`plot_ducking` of a finished run (first variant), from its files."""

    segments = [(g.start, g.end) for g in load_transcript(result.transcript)]
    return plot_ducking(vad.load_spans(result.speech), result.mix[0], result.bgm[0],
                        segments=segments, title=title)  # fmt: skip


def _ducking_figure(folder: Path, figure: Path) -> list[str]:
    """``ducking.png`` of the first variant, and the report's lines about it."""
    import matplotlib.pyplot as plt  # the figure is closed after saving: never shown

    mixes = sorted(folder.glob("mix*.wav"))
    if not (folder / paths.RUN_SPEECH).exists() or not mixes:
        return []
    speech = vad.load_spans(folder / paths.RUN_SPEECH)
    segments = []
    if (folder / paths.RUN_TRANSCRIPT).exists():
        segments = [(g.start, g.end) for g in load_transcript(folder / paths.RUN_TRANSCRIPT)]
    fig = plot_ducking(speech, mixes[0], sorted(folder.glob("bgm*.wav"))[0], segments=segments)
    with paths.atomic_output(figure) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    spoken = sum(end - start for start, end in speech)
    return [
        "## Ducking", "", f"![ducking]({figure.name})", "",
        f"Silero VAD found {len(speech)} stretches of speech, {spoken:.1f} s in all.", "",
    ]  # fmt: skip


def _delivered_lines(folder: Path) -> list[str]:
    """The loudness and true peak measured on each delivered file's decoded audio."""
    record = folder / "delivered.json"
    if not record.exists():
        return []
    rows = json.loads(record.read_text())
    return [
        "## Delivered audio (decoded, as a player hears it)", "",
        "| output | loudness (LUFS) | true peak (dBTP) | limiter ceiling (dBTP) | re-encodes |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {Path(r['output']).name} | {r['loudness_lufs']} (target {r['target_lufs']}) | "
          f"{r['true_peak_db']} (ceiling {r['true_peak_ceiling_db']}) | "
          f"{r['limiter_ceiling_db']} | {r['reencodes']} |" for r in rows),
        "",
    ]  # fmt: skip


def plot_result(result, title: str = ""):
    """:func:`plot_run` of a finished run (first variant), from its files."""

    spans = timeline_io.load_timeline(result.timeline["json"])
    return plot_run(
        spans, result.voice, result.bgm[0], title=title or f"{result.input.name}: {result.music}"
    )


def clip_images(result, count: int = 6) -> list:
    """The first ``count`` spectrogram images of the first variant's music: riffusion's own
    clip images when the run made them, else the codec's images of successive 5.12 s windows."""
    from PIL import Image

    folder = result.bgm[0].with_name(f"{result.bgm[0].stem}.clips")
    if folder.is_dir():
        return [Image.open(p) for p in sorted(folder.glob("clip-*.png"))[:count]]
    params = spectrogram.SpectrogramParams()
    audio = media.decode_audio(result.bgm[0], params.sample_rate)
    window = int(CLIP_SECONDS * params.sample_rate)
    starts = range(0, max(len(audio) - window, 0) + 1, window)
    return [spectrogram.image_from_audio(audio[s : s + window], params) for s in starts][:count]


def plot_images(images, title: str = "spectrogram images of the music, clip by clip"):
    """Images side by side (each 512 px = 5.12 s; low frequencies at the bottom)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(images), 1), figsize=(2.2 * max(len(images), 1), 2.6))
    for k, (ax, image) in enumerate(zip(np.atleast_1d(axes), images, strict=False)):
        ax.imshow(image)
        ax.set_title(f"clip {k + 1}", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def transcript_table(path):
    """The transcript as a table (start, end, language, text)."""
    import pandas as pd

    rows = [
        {"start": s.start, "end": s.end, "language": s.language, "text": s.text}
        for s in load_transcript(path)
    ]
    return pd.DataFrame(rows, columns=["start", "end", "language", "text"])

"""The demo sample: a short video whose synthetic voice tells a story through five emotions.

``make sample`` (``python -m videobgm.sample``) rebuilds ``data/samples/``; it needs the
``espeak-ng`` program (Debian/Ubuntu: ``apt-get install espeak-ng``), which ``make test`` does
not: the files it made are committed. What it writes:

- ``story.mp4``: about 45 s, 320 x 180, H.264 + AAC. Voice (espeak-ng, prosody per emotion)
  over quiet procedural music and noise (what voice isolation must remove), with simple
  moving visuals whose colour follows the story.
- ``story.srt``: the spoken lines with their times.
- ``story.timeline.json``: the intended emotion per stretch, in the timeline format.
- ``story.voice.flac``: the clean voice alone (the reference for separation quality).
- ``speech.flac``: a second speaker, for separation tests on more than one voice.

:func:`long_video` makes longer test videos (minutes to hours) from the committed files, with
no espeak-ng: the story's voice repeated over looping procedural music, with captions and
timeline to match; the benchmarks measure cost growth with video length on them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videobgm import media, paths
from videobgm.errors import VideobgmError
from videobgm.synth import arrange as synth
from videobgm.transcribe import read_captions
from videobgm.vocab import SAMPLE_RATE

ESPEAK_RATE = 22050  # Hz; what espeak-ng writes
PAUSE_S = 1.2  # silence between two emotional stretches
LEAD_IN_S = 0.8  # silence before the first line
MUSIC_DB = -24.0  # background music level relative to the voice's RMS
NOISE_DB = -38.0  # noise floor relative to the voice's RMS
FPS = 15  # frames per second of the demo video
SIZE = (320, 180)  # px, width x height


@dataclass(frozen=True)
class Line:
    emotion: str
    text: str
    speed: int  # espeak-ng words per minute
    pitch: int  # espeak-ng 0-99
    amplitude: int  # espeak-ng 0-200


STORY = (
    Line("joy", "This morning I got wonderful news! I passed my exam. "
         "I am so happy, I could dance all day!", 165, 70, 150),
    Line("sadness", "But then I heard that my old dog had died. "
         "I miss him so much, and I feel so sad and alone.", 120, 30, 100),
    Line("fear", "At night I heard strange footsteps in the dark house. "
         "I was terrified, and my hands were shaking with fear.", 150, 60, 110),
    Line("anger", "It was my neighbour, sneaking into my garden again! "
         "I am furious! How dare he do this to me!", 170, 35, 190),
    Line("surprise", "And then, wow, he handed me a puppy! "
         "I did not expect that at all. What a surprise!", 155, 80, 160),
)  # fmt: skip
COLOURS = {  # RGB backgrounds per emotion, for the visuals
    "joy": (250, 200, 60),
    "sadness": (60, 90, 160),
    "fear": (70, 40, 90),
    "anger": (190, 40, 30),
    "surprise": (240, 120, 40),
}
SECOND_SPEAKER = (
    "The river was quiet that evening, and we talked about music until the stars came out."
)
HELD_OUT_SPEAKER = (  # never used while tuning the separator: its honest test
    "Nobody expected the train to be early, so half the village missed it. "
    "By noon the station master had written three angry letters and eaten two pies. "
    "Then the baker closed her shop and walked along the tracks, singing to herself. "
    "Some of the children followed her, counting the sleepers, until the sun went down. "
    "When the next train finally arrived, it was empty, and everyone laughed about it for years."
)


def espeak(
    text: str, speed: int = 150, pitch: int = 50, amplitude: int = 120, voice: str = "en-us"
) -> np.ndarray:
    """Speak ``text`` with espeak-ng; return mono float32 audio at :data:`SAMPLE_RATE`."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise VideobgmError(
            "espeak-ng is not installed; it is needed only to rebuild the demo sample "
            "(Debian/Ubuntu: apt-get install espeak-ng)"
        )
    import soundfile as sf
    from scipy.signal import resample_poly

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "line.wav"
        cmd = [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude)]
        subprocess.run([*cmd, "-w", str(wav), text], check=True, capture_output=True)
        audio, rate = sf.read(wav, dtype="float32")
    audio = resample_poly(audio, SAMPLE_RATE // rate, 1) if rate != SAMPLE_RATE else audio
    return np.asarray(audio, dtype=np.float32)


def write_held_out_speech(out_dir: Path) -> Path:
    """``heldout.flac``: a third speaker (espeak-ng's ``en-us+f3``, higher and faster) saying
    text nobody tuned on, at espeak-ng's rate, for the separator's held-out evaluation."""
    from scipy.signal import resample_poly

    speech = espeak(HELD_OUT_SPEAKER, 165, 70, 120, "en-us+f3")
    speech = resample_poly(speech, 1, SAMPLE_RATE // ESPEAK_RATE)
    path = Path(out_dir) / "heldout.flac"
    return media.write_audio(path, 0.5 * _peak_normalised(speech), ESPEAK_RATE)


DIALOGUE = (  # (espeak-ng voice, speed, pitch, text): four speakers taking turns
    ("en-us", 150, 45, "Did you hear that the bridge is closed again?"),
    ("en-gb", 140, 35, "Yes, since Monday. The river came up over the road, and nobody can cross."),
    ("en-us+f3", 165, 70, "So how are we getting the piano to the hall?"),
    ("en-gb-scotland", 135, 55, "We could borrow the farmer's boat, if he is in a good mood."),
    ("en-us", 150, 45, "He is never in a good mood. Not once in twenty years."),
    ("en-us+f3", 165, 70, "Then we ask his daughter. She owes me a favour, after the fair."),
    ("en-gb", 140, 35, "Fine. Tomorrow at six, by the old mill, and bring some rope."),
    ("en-gb-scotland", 135, 55, "And sandwiches. Moving pianos is hungry work."),
)
DIALOGUE_PAUSES_S = (1.0, 0.8, 1.5, 1.2, 0.9, 1.4, 1.1)  # s; silence between the turns
DIALOGUE_EDGE_S = 1.0  # s of silence before the first and after the last turn


def write_dialogue(out_dir: Path) -> tuple[Path, Path]:
    """``dialogue.flac`` (four espeak-ng speakers taking turns, pauses of 0.8-1.5 s, at
    16 kHz, the voice-activity detector's rate) and ``dialogue.srt`` (each turn's first and
    last sample above -40 dB of its peak): the fixture for speech activity and ducking on
    noisy mixtures."""
    from scipy.signal import resample_poly

    pieces = [np.zeros(int(DIALOGUE_EDGE_S * SAMPLE_RATE), np.float32)]
    cues, cursor = [], DIALOGUE_EDGE_S
    pauses = (*DIALOGUE_PAUSES_S, DIALOGUE_EDGE_S)
    for (voice, speed, pitch, text), pause in zip(DIALOGUE, pauses, strict=True):
        line = espeak(text, speed, pitch, 120, voice)
        loud = np.flatnonzero(np.abs(line) > 0.01 * np.max(np.abs(line)))  # -40 dB
        line = line[loud[0] : loud[-1] + 1]  # the turn starts and ends where its sound does
        cues.append((cursor, cursor + len(line) / SAMPLE_RATE, text))
        pieces += [line, np.zeros(int(pause * SAMPLE_RATE), np.float32)]
        cursor += (len(line) + int(pause * SAMPLE_RATE)) / SAMPLE_RATE
    speech = resample_poly(np.concatenate(pieces), 160, 441)  # 44.1 -> 16 kHz
    audio = media.write_audio(
        Path(out_dir) / "dialogue.flac", 0.5 * _peak_normalised(speech), 16000
    )
    captions = Path(out_dir) / "dialogue.srt"
    captions.write_text(_srt_text(cues), encoding="utf-8")
    return audio, captions


def _speak_story() -> tuple[np.ndarray, list[tuple[float, float, Line]]]:
    """The voice track and each line's (start, end) in seconds."""
    pieces = [np.zeros(int(LEAD_IN_S * SAMPLE_RATE), np.float32)]
    cues, cursor = [], LEAD_IN_S
    for line in STORY:
        voice = espeak(line.text, line.speed, line.pitch, line.amplitude)
        cues.append((cursor, cursor + len(voice) / SAMPLE_RATE, line))
        pieces += [voice, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)]
        cursor += (len(voice) + int(PAUSE_S * SAMPLE_RATE)) / SAMPLE_RATE
    return np.concatenate(pieces), cues


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _background(voice: np.ndarray, seed: int = 7) -> np.ndarray:
    """Quiet procedural music plus a low noise floor, levelled against the voice."""

    seconds = len(voice) / SAMPLE_RATE
    music = synth.render("neutral", seconds, seed=seed, sample_rate=SAMPLE_RATE)[: len(voice)]
    noise = np.random.default_rng(seed).standard_normal(len(voice)).astype(np.float32)
    speech_rms = _rms(voice[np.abs(voice) > 0.01]) if np.any(np.abs(voice) > 0.01) else 0.1
    music *= speech_rms * 10 ** (MUSIC_DB / 20) / max(_rms(music), 1e-9)
    noise *= speech_rms * 10 ** (NOISE_DB / 20)
    return (music + noise).astype(np.float32)


def _emotion_at(t: float, spans: list[dict]) -> str:
    return next(s["emotion"] for s in spans if s["start"] <= t <= s["end"])


def _frames(duration_s: float, spans: list[dict]):
    """Simple moving visuals: the background colour follows the story, a ball bounces."""
    width, height = SIZE
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(int(round(duration_s * FPS))):
        t = i / FPS
        colour = np.array(COLOURS[_emotion_at(t, spans)], dtype=np.float32)
        shade = 0.85 + 0.15 * np.sin(2 * np.pi * (xx / width + t / 4.0))
        frame = shade[..., None] * colour
        cx = width / 2 + 0.4 * width * np.sin(2 * np.pi * t / 6.0)
        cy = height / 2 + 0.3 * height * np.cos(2 * np.pi * t / 2.5)
        ball = (xx - cx) ** 2 + (yy - cy) ** 2 < (height / 8) ** 2
        frame[ball] = 255
        yield frame.clip(0, 255).astype(np.uint8)


def _timeline(cues: list[tuple[float, float, Line]], duration_s: float) -> list[dict]:
    """Contiguous spans: boundaries at the middle of the pause between two lines."""
    bounds = [0.0]
    bounds += [(end + nxt) / 2 for (_, end, _), (nxt, _, _) in zip(cues, cues[1:], strict=False)]
    bounds.append(duration_s)
    return [
        {"start": round(a, 3), "end": round(b, 3), "emotion": line.emotion, "confidence": 1.0}
        for a, b, (_, _, line) in zip(bounds[:-1], bounds[1:], cues, strict=True)
    ]


def _srt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _srt(cues: list[tuple[float, float, Line]]) -> str:
    return _srt_text([(a, b, line.text) for a, b, line in cues])


def _srt_text(cues: list[tuple[float, float, str]]) -> str:
    blocks = [
        f"{i}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n"
        for i, (a, b, text) in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def make_demo_sample(out_dir: Path | None = None) -> dict[str, Path]:
    """Rebuild the demo sample files (see the module docstring); return their paths."""
    from scipy.signal import resample_poly

    out_dir = paths.ensure_dir(Path(out_dir) if out_dir else paths.samples())
    voice, cues = _speak_story()
    # Whole video frames, and audio exactly as long as they are.
    duration_s = int(np.ceil(len(voice) / SAMPLE_RATE * FPS)) / FPS
    voice = np.pad(voice, (0, int(round(duration_s * SAMPLE_RATE)) - len(voice)))
    spans = _timeline(cues, duration_s)
    mix = voice + _background(voice)
    mix *= 0.5 / max(float(np.max(np.abs(mix))), 1e-9)  # peak -6 dBFS
    written = {"voice": out_dir / "story.voice.flac", "speech": out_dir / "speech.flac"}
    # The clean stems keep espeak-ng's own rate: nothing above 11 kHz is lost, half the bytes.
    stem = resample_poly(voice, 1, SAMPLE_RATE // ESPEAK_RATE)
    media.write_audio(written["voice"], 0.5 * _peak_normalised(stem), ESPEAK_RATE)
    speech = espeak(SECOND_SPEAKER, 140, 45, 120, "en-gb")
    speech = resample_poly(speech, 1, SAMPLE_RATE // ESPEAK_RATE)
    media.write_audio(written["speech"], 0.5 * _peak_normalised(speech), ESPEAK_RATE)
    written["held_out"] = write_held_out_speech(out_dir)
    written["dialogue"], written["dialogue_srt"] = write_dialogue(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        soundtrack = media.write_audio(Path(tmp) / "mix.wav", mix, SAMPLE_RATE)
        written["video"] = media.write_video(
            out_dir / "story.mp4", _frames(duration_s, spans), FPS, soundtrack, crf=30
        )
    written["srt"] = out_dir / "story.srt"
    written["srt"].write_text(_srt(cues), encoding="utf-8")
    written["timeline"] = out_dir / "story.timeline.json"
    written["timeline"].write_text(json.dumps(spans, indent=2) + "\n", encoding="utf-8")
    return written


# --------------------------------------------------------------------------- long test videos

LONG_SIZE = (128, 72)  # px; long test videos are small: their picture is only copied
LONG_FPS = 10  # frames per second of long test videos


def long_video(
    seconds: float,
    out_dir: Path | None = None,
    size: tuple[int, int] = LONG_SIZE,
    fps: int = LONG_FPS,
    preset: str = "ultrafast",
) -> Path:
    """A test video of ``seconds`` with speech: the demo story's clean voice repeated over
    looping procedural music and noise (at the demo's levels), a scrolling textured picture of
    ``size`` at ``fps``, H.264 (x264 ``preset``) + AAC; ``<stem>.srt`` and
    ``<stem>.timeline.json`` beside it (the story's, repeated). Built once per set of
    arguments into ``out_dir`` (default ``data/interim/long-videos``) and reused; memory stays
    bounded by one repetition of the story whatever the length. Returns the video's path."""
    out_dir = paths.ensure_dir(Path(out_dir) if out_dir else paths.interim() / "long-videos")
    width, height = size
    video = out_dir / f"speech-{seconds:g}s-{width}x{height}-{fps}fps-{preset}.mp4"
    if video.exists():
        return video
    frames = int(round(seconds * fps))
    duration_s = frames / fps
    voice = media.decode_audio(paths.samples() / "story.voice.flac", SAMPLE_RATE)
    period_s = len(voice) / SAMPLE_RATE
    spans = json.loads((paths.samples() / "story.timeline.json").read_text(encoding="utf-8"))
    cues = _read_cues(paths.samples() / "story.srt")
    repeats = int(np.ceil(duration_s / period_s))
    tiled = [
        {**span, "start": span["start"] + k * period_s, "end": span["end"] + k * period_s}
        for k in range(repeats)
        for span in spans
        if span["start"] + k * period_s < duration_s
    ]
    tiled[-1]["end"] = duration_s
    for span in tiled:
        span["start"], span["end"] = round(span["start"], 3), round(min(span["end"], duration_s), 3)
    (out_dir / f"{video.stem}.timeline.json").write_text(json.dumps(tiled, indent=1) + "\n")
    captions = [
        (a + k * period_s, min(b + k * period_s, duration_s), text)
        for k in range(repeats)
        for a, b, text in cues
        if a + k * period_s < duration_s
    ]
    (out_dir / f"{video.stem}.srt").write_text(_srt_text(captions), encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        wav = _long_soundtrack(Path(tmp) / "mix.wav", voice, round(duration_s * SAMPLE_RATE))
        pictures = _scrolling_frames(frames, fps, size, tiled)
        media.write_video(video, pictures, fps, wav, crf=30, preset=preset)
    return video


def _read_cues(path: Path) -> list[tuple[float, float, str]]:
    return [(seg.start, seg.end, seg.text) for seg in read_captions(path)]


def _long_soundtrack(path: Path, voice: np.ndarray, n_samples: int) -> Path:
    """Voice repeated, over a looping calm synthesiser clip and seeded noise, written one
    repetition at a time (16-bit WAV)."""
    import soundfile as sf

    loop = np.asarray(synth.clip("neutral", seed=7), dtype=np.float32)
    speech_rms = _rms(voice[np.abs(voice) > 0.01])
    loop = loop * np.float32(speech_rms * 10 ** (MUSIC_DB / 20) / max(_rms(loop), 1e-9))
    rng = np.random.default_rng(7)
    noise_level = np.float32(speech_rms * 10 ** (NOISE_DB / 20))
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as out:
        for start in range(0, n_samples, len(voice)):
            count = min(len(voice), n_samples - start)
            index = (start + np.arange(count)) % len(loop)
            noise = rng.standard_normal(count).astype(np.float32) * noise_level
            block = voice[:count] + loop[index] + noise
            out.write(np.clip(0.5 * block, -1.0, 1.0))
    return path


def _scrolling_frames(count: int, fps: int, size: tuple[int, int], spans: list[dict]):
    """A seeded noise texture scrolling sideways (work for the encoder's motion search),
    tinted by the emotion of the moment."""
    width, height = size
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 96, (height, 2 * width, 1)).astype(np.uint8)
    texture = np.repeat(texture, 3, axis=2)
    tints = {e: np.asarray(c, np.uint8) // 2 for e, c in COLOURS.items()}
    span_index = 0
    for i in range(count):
        t = i / fps
        while span_index + 1 < len(spans) and spans[span_index]["end"] <= t:
            span_index += 1
        offset = (i * 3) % width
        tint = tints.get(spans[span_index]["emotion"], np.full(3, 64, np.uint8))
        yield texture[:, offset : offset + width] + tint


def _peak_normalised(audio: np.ndarray) -> np.ndarray:
    return audio / max(float(np.max(np.abs(audio))), 1e-9)


def main() -> None:
    for name, path in make_demo_sample().items():
        size_kb = path.stat().st_size / 1024
        print(f"{name:9} {path}  ({size_kb:.0f} KiB)")


if __name__ == "__main__":
    main()

"""Media I/O through the ffmpeg binary that the ``imageio-ffmpeg`` wheel ships.

There is no ffmpeg on PATH and no ffprobe: :func:`probe` parses ``ffmpeg -i``. ffmpeg is always
called with an argument list, never through a shell. Audio is float32 numpy, shape
``(samples,)`` for mono or ``(channels, samples)``, with its sample rate beside it.

Every failure raises :class:`MediaError`, one sentence naming the file and the problem.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from videobgm.errors import VideobgmError
from videobgm.paths import atomic_output
from videobgm.vocab import SAMPLE_RATE

AUDIO_SUFFIXES = {".wav": "WAV", ".flac": "FLAC"}
# Output containers whose audio must be Opus rather than AAC.
_OPUS_CONTAINERS = {".webm"}
_FASTSTART_CONTAINERS = {".mp4", ".m4v", ".mov"}
_READ_BYTES = 1 << 20  # pipe read size: 1 MiB


class MediaError(VideobgmError, RuntimeError):
    """A media file could not be read or written; the message names the file."""

    def __init__(self, path: str | os.PathLike[str], problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class MediaInfo:
    """What ``ffmpeg -i`` says about a file (first video and first audio stream)."""

    path: Path
    duration_s: float
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], path: str | os.PathLike[str], what: str) -> str:
    """Run ``ffmpeg args``; return its stderr. On failure raise MediaError about ``path``."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise MediaError(path, f"{what} failed ({_last_error_line(proc.stderr)})")
    return proc.stderr


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no message from ffmpeg"


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MediaError(path, "no such file")
    if path.is_dir():
        raise MediaError(path, "is a directory, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(path, "is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "is not readable (permission denied)")


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #0:\d+\S*: (Video|Audio): (\w+)(.*)")
_SIZE = re.compile(r", (\d{1,5})x(\d{1,5})")
_FPS = re.compile(r", ([\d.]+)(k?) (?:fps|tbr)")
_RATE = re.compile(r", (\d+) Hz, ([^,]+)")
_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6, "7.1": 8}
_TIME = re.compile(r"time=(\d+):(\d\d):(\d\d(?:\.\d+)?)")


def _hms(match: re.Match[str]) -> float:
    h, m, s = match.groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def _channels(layout: str) -> int:
    layout = layout.strip()
    count = re.match(r"(\d+) channels", layout)
    if count:
        return int(count.group(1))
    return _LAYOUTS.get(layout.split("(")[0], 2)


def _parse_streams(stderr: str) -> dict[str, object]:
    info: dict[str, object] = {"has_video": False, "has_audio": False}
    for kind, codec, rest in _STREAM.findall(stderr):
        if kind == "Video" and not info["has_video"] and "attached pic" not in rest:
            size, fps = _SIZE.search(rest), _FPS.search(rest)
            info.update(has_video=True, video_codec=codec)
            if size:
                info.update(width=int(size.group(1)), height=int(size.group(2)))
            if fps:
                info["fps"] = float(fps.group(1)) * (1000 if fps.group(2) else 1)
        elif kind == "Audio" and not info["has_audio"]:
            info.update(has_audio=True, audio_codec=codec)
            rate = _RATE.search(rest)
            if rate:
                info.update(sample_rate=int(rate.group(1)), channels=_channels(rate.group(2)))
    return info


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Duration and streams of a media file, parsed from ``ffmpeg -i``.

    Raises MediaError for a missing, empty or unreadable file, or one with no audio or
    video stream.
    """
    path = Path(path)
    _check_readable(path)
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)]
    stderr = subprocess.run(cmd, capture_output=True, text=True, errors="replace").stderr
    info = _parse_streams(stderr)
    if not (info["has_video"] or info["has_audio"]):
        if "Invalid data" in stderr or "Input #0" not in stderr:
            raise MediaError(path, "is not a readable audio or video file")
        raise MediaError(path, "has neither an audio nor a video stream")
    duration = _DURATION.search(stderr)
    seconds = _hms(duration) if duration else _measure_duration(path)
    return MediaInfo(path=path, duration_s=seconds, **info)  # type: ignore[arg-type]


def _measure_duration(path: Path) -> float:
    """Duration by demuxing the whole file (for containers that do not state it)."""
    stderr = run_ffmpeg(["-i", str(path), "-c", "copy", "-f", "null", "-"], path, "reading")
    times = list(_TIME.finditer(stderr))
    if not times:
        raise MediaError(path, "has no measurable duration")
    return _hms(times[-1])


def _decode_cmd(path: Path, sample_rate: int, channels: int, start_s: float, duration_s):
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error"]
    if start_s:
        cmd += ["-ss", f"{start_s:.6f}"]
    cmd += ["-i", str(path)]
    if duration_s is not None:
        cmd += ["-t", f"{duration_s:.6f}"]
    return cmd + [
        *("-map", "0:a:0", "-vn", "-sn", "-dn"),
        *("-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sample_rate)),
        "pipe:1",
    ]


def _audio_channels(path: Path) -> int:
    """Channels to decode: the file's own, at most two (ffmpeg downmixes surround to stereo).
    Mono is averaged here rather than by ffmpeg, whose stereo->mono matrix adds the two
    channels at -3 dB each (+3 dB for centred sound, which can exceed full scale)."""
    info = probe(path)
    if not info.has_audio:
        raise MediaError(path, "has no audio stream")
    return min(info.channels or 2, 2)


def iter_audio(
    path: str | os.PathLike[str],
    sample_rate: int = SAMPLE_RATE,
    mono: bool = True,
    chunk_s: float = 30.0,
    start_s: float = 0.0,
    duration_s: float | None = None,
) -> Iterator[np.ndarray]:
    """Stream a file's first audio stream as float32 chunks of ``chunk_s`` seconds.

    Each chunk has shape ``(samples,)`` when ``mono`` else ``(channels, samples)``; memory
    stays bounded by one chunk whatever the file's length.
    """
    path = Path(path)
    channels = _audio_channels(path)
    cmd = _decode_cmd(path, sample_rate, channels, start_s, duration_s)
    frame_bytes = 4 * channels
    chunk_bytes = max(1, int(chunk_s * sample_rate)) * frame_bytes
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        while True:
            block = proc.stdout.read(chunk_bytes)
            if not block:
                break
            usable = len(block) - len(block) % frame_bytes
            yield _to_array(block[:usable], channels, mono)
        stderr = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise MediaError(path, f"audio decoding failed ({_last_error_line(stderr)})")


def _to_array(buf: bytes | bytearray, channels: int, mono: bool) -> np.ndarray:
    samples = np.frombuffer(buf, dtype="<f4").reshape(-1, channels)
    if mono:
        return samples[:, 0] if channels == 1 else samples.mean(axis=1, dtype=np.float32)
    return samples.T


def decode_audio(
    path: str | os.PathLike[str],
    sample_rate: int = SAMPLE_RATE,
    mono: bool = True,
    start_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode a file's first audio stream to float32 at ``sample_rate``.

    Streamed through a pipe (no temporary file). Returns ``(samples,)`` when ``mono`` else
    ``(channels, samples)`` with at most two channels. Raises MediaError when the file has no
    audio stream or cannot be decoded.
    """
    path = Path(path)
    info = probe(path)
    seconds = info.duration_s - start_s if duration_s is None else duration_s
    # Preallocated from the stated duration (plus a second), grown only if the file runs long:
    # peak memory stays at the size of the audio itself.
    out = np.empty(((1 if mono else 2), int((max(seconds, 0) + 1) * sample_rate)), np.float32)
    filled, channels = 0, 1
    for chunk in iter_audio(path, sample_rate, mono, 30.0, start_s, duration_s):
        chunk = chunk[None] if chunk.ndim == 1 else chunk
        channels = len(chunk)
        if filled + chunk.shape[1] > out.shape[1]:
            out = np.concatenate([out, np.empty_like(out)], axis=1)
        out[:channels, filled : filled + chunk.shape[1]] = chunk
        filled += chunk.shape[1]
    audio = out[:channels, :filled]
    return np.ascontiguousarray(audio[0] if mono else audio)


def write_audio(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sample_rate: int,
    subtype: str = "PCM_16",
) -> Path:
    """Write ``(samples,)`` or ``(channels, samples)`` float audio as WAV or FLAC, atomically.

    Values are clipped to [-1, 1] for integer subtypes. Returns the path written.
    """
    data = np.asarray(audio, dtype=np.float32)
    frames = data if data.ndim == 2 else data[None]  # (channels, samples)
    block = 1 << 20  # samples written at a time: memory stays bounded for long audio
    blocks = (frames[:, start : start + block] for start in range(0, frames.shape[1], block))
    return write_audio_blocks(path, blocks, sample_rate, len(frames), subtype)


def write_audio_blocks(
    path: str | os.PathLike[str],
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    channels: int = 1,
    subtype: str = "PCM_16",
) -> Path:
    """Write audio that arrives block by block (``(samples,)`` or ``(channels, samples)``
    each; a mono block is copied to every channel) as WAV or FLAC, atomically: memory holds
    one block, and the file appears only once the last block is written.

    Values are clipped to [-1, 1] for integer subtypes. Returns the path written.
    """
    import soundfile as sf

    path = Path(path)
    fmt = AUDIO_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise MediaError(path, f"unsupported audio format {path.suffix!r} (use .wav or .flac)")
    with atomic_output(path) as tmp:
        with sf.SoundFile(tmp, "w", sample_rate, channels, subtype, format=fmt) as out:
            for block in blocks:
                data = np.asarray(block, dtype=np.float32)
                if data.ndim == 1:
                    data = np.broadcast_to(data, (channels, len(data)))
                if not np.all(np.isfinite(data)):
                    raise MediaError(path, "audio to write contains NaN or infinite samples")
                chunk = np.ascontiguousarray(data.T)
                out.write(np.clip(chunk, -1.0, 1.0) if subtype.startswith("PCM") else chunk)
    return path


class AudioReader:
    """Random access to a WAV or FLAC file as mono float32: ``reader(lo, hi)`` is samples
    ``lo`` to ``hi`` (zeros outside ``0 .. length``), read from disk each time, so that
    a long file is never held whole. ``length`` defaults to the file's; a different one
    pads the file with silence or cuts it."""

    def __init__(self, path: str | os.PathLike[str], length: int | None = None) -> None:
        import soundfile as sf

        self.path = Path(path)
        try:
            self._file = sf.SoundFile(self.path)
        except (sf.LibsndfileError, OSError) as exc:
            raise MediaError(self.path, f"cannot read audio ({exc})") from None
        self.sample_rate = self._file.samplerate
        self._frames = self._file.frames
        self.length = self._frames if length is None else int(length)

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros(max(hi - lo, 0), np.float32)
        start, stop = max(lo, 0), min(hi, self.length, self._frames)
        if stop > start:
            self._file.seek(start)
            data = self._file.read(stop - start, dtype="float32", always_2d=True)
            out[start - lo : start - lo + len(data)] = (
                data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
            )
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mux(
    video_path: str | os.PathLike[str],
    audio_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    audio_bitrate: str = "192k",
) -> Path:
    """Replace a video's audio: the video stream copied bit for bit, the new audio encoded.

    AAC for most containers, Opus for ``.webm``; other streams (old audio, subtitles) are
    dropped. The output lasts exactly as long as the input video (the audio is padded or cut),
    mp4/mov get ``+faststart``, and the file appears atomically. Refuses to overwrite an input.
    """
    video_path, audio_path, out_path = Path(video_path), Path(audio_path), Path(out_path)
    for source in (video_path, audio_path):
        if out_path.resolve() == source.resolve():
            raise MediaError(out_path, "output path is the same as an input; refusing to overwrite")
    info = probe(video_path)
    if not info.has_video:
        raise MediaError(video_path, "has no video stream to mux audio into")
    _check_readable(audio_path)
    suffix = out_path.suffix.lower()
    # ffmpeg's "fast" AAC coder: a third quicker than the default two-loop search, and at
    # 192 kb/s the difference is not audible for a voice-over-music mix.
    codec = (
        ["-c:a", "libopus"] if suffix in _OPUS_CONTAINERS else ["-c:a", "aac", "-aac_coder", "fast"]
    )
    args = ["-y", "-i", str(video_path), "-i", str(audio_path)]
    args += ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *codec, "-b:a", audio_bitrate]
    args += ["-af", "apad", "-t", f"{info.duration_s:.6f}", "-map_metadata", "0"]
    if suffix in _FASTSTART_CONTAINERS:
        args += ["-movflags", "+faststart"]
    with atomic_output(out_path) as tmp:
        run_ffmpeg([*args, str(tmp)], out_path, "muxing")
    return out_path


def packet_md5s(path: str | os.PathLike[str], stream: str = "v:0") -> list[tuple[int, str]]:
    """Size and MD5 of every packet of one stream (ffmpeg ``framemd5`` of a stream copy).

    Two files whose lists are equal carry the same encoded stream, bit for bit.
    """
    path = Path(path)
    _check_readable(path)
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path)]
    cmd += ["-map", f"0:{stream}", "-c", "copy", "-f", "framemd5", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MediaError(path, f"reading packets failed ({_last_error_line(proc.stderr)})")
    rows = [line.split(",") for line in proc.stdout.splitlines() if not line.startswith("#")]
    return [(int(row[4]), row[5].strip()) for row in rows if len(row) >= 6]


def write_video(
    out_path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float,
    audio_path: str | os.PathLike[str] | None = None,
    crf: int = 28,
    preset: str = "medium",
) -> Path:
    """Encode RGB uint8 frames ``(height, width, 3)`` to H.264 (with optional AAC audio).

    For generated fixtures, the demo sample and benchmarks. Frames are streamed into ffmpeg's
    stdin; the file appears atomically. The audio is not cut: give it the video's length.
    """
    out_path = Path(out_path)
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise MediaError(out_path, "no frames to encode")
    height, width = first.shape[:2]
    args = ["-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    args += ["-s", f"{width}x{height}", "-r", f"{fps}", "-i", "pipe:0"]
    if audio_path is not None:
        args += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac"]
        args += ["-b:a", "64k"]
    args += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
    args += ["-movflags", "+faststart"]
    with atomic_output(out_path) as tmp:
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", *args, str(tmp)]
        with subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdin is not None and proc.stderr is not None
            try:
                for frame in itertools.chain([first], iterator):
                    proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            except BrokenPipeError:
                pass
            proc.stdin.close()
            stderr = proc.stderr.read().decode(errors="replace")
            if proc.wait() != 0:
                raise MediaError(out_path, f"video encoding failed ({_last_error_line(stderr)})")
    return out_path

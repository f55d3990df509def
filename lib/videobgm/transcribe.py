"""Speech to text: Whisper on the decoded audio, or a sidecar ``.srt`` / ``.vtt`` that replaces it.

The emotion classifier reads English, so for non-English speech the text it gets is Whisper's
``task="translate"`` output (the original project's reason for choosing Whisper), with the
original-language transcript kept beside it. Whisper's known failure modes are filtered out:
segments that are probably not speech (high ``no_speech_prob`` *and* low ``avg_logprob``) and
hallucinated repetitions (high ``compression_ratio``); the thresholds are parameters.

Audio is handed to Whisper as a 16 kHz float32 array decoded by :mod:`videobgm.media` (Whisper's
own loader needs ``ffmpeg`` on PATH). Files are read and written at the edges: :func:`transcribe`
returns a :class:`Transcript`, :func:`save_transcript` / :func:`load_transcript` keep it as JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from videobgm import media
from videobgm.errors import InputError
from videobgm.models import profiles as models
from videobgm.paths import atomic_output

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz; what Whisper expects
SILENT_PEAK = 1e-4  # linear peak amplitude (-80 dBFS); below it the audio is digital silence
SIDECAR_SUFFIXES = (".srt", ".vtt")
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Whisper's default decoding schedule
TRANSCRIPT_VERSION = 1  # bump when the JSON layout changes


@dataclass(frozen=True)
class Segment:
    """One phrase of speech: ``start``/``end`` in seconds, ``text`` in English (what the emotion
    classifier reads), ``language`` the spoken language, ``original_text`` what was said in it."""

    start: float  # s
    end: float  # s
    text: str  # English
    language: str = "en"  # ISO 639-1 code of the spoken language
    original_text: str = ""  # the text in the spoken language (equal to text for English)
    id: int = 0  # position in the transcript, referenced by timeline spans
    no_speech_prob: float | None = None  # Whisper's statistics; None for sidecar captions
    avg_logprob: float | None = None
    compression_ratio: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Transcript:
    """The phrases of one video or audio file, sorted by start, over ``duration_s`` seconds.

    Iterating over a transcript yields its segments. ``source`` says where the text came from
    (``whisper:<model>`` or the sidecar's path); ``dropped`` counts segments that the filters
    removed; ``translated`` is True when ``text`` is Whisper's English translation.
    """

    segments: tuple[Segment, ...]
    duration_s: float  # s; of the media (the timeline must cover all of it)
    language: str | None  # spoken language; None when nothing was said
    source: str
    translated: bool = False
    dropped: int = 0
    extra: dict = field(default_factory=dict)  # e.g. the language probability

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def texts(self) -> list[str]:
        return [segment.text for segment in self.segments]


@dataclass(frozen=True)
class SpeechFilter:
    """Thresholds that drop Whisper's known failure modes (also passed to Whisper, where they
    steer its temperature fallback)."""

    no_speech_threshold: float = 0.6  # drop when no_speech_prob is above this ...
    logprob_threshold: float = -1.0  # ... and avg_logprob is below this (Whisper's own rule)
    compression_ratio_threshold: float = 2.4  # drop above: repeated text (hallucination loop)

    def keeps(self, seg: dict) -> bool:
        """Whether a Whisper segment dict passes the filters."""
        silent = seg.get("no_speech_prob", 0.0) > self.no_speech_threshold
        unsure = seg.get("avg_logprob", 0.0) < self.logprob_threshold
        repeated = seg.get("compression_ratio", 0.0) > self.compression_ratio_threshold
        return not (silent and unsure) and not repeated and bool(seg.get("text", "").strip())


# --------------------------------------------------------------------------- Whisper


def normalise_language(value: str | None) -> str | None:
    """A spoken-language option as Whisper's code (``"English"``, ``"EN"``, ``"en"`` -> ``"en"``),
    through Whisper's own tables (codes, names and aliases such as ``"Castilian"``); None
    stays None (detect). An unknown language is one sentence."""
    if value is None or not str(value).strip():
        return None
    # deferred: whisper imports torch, and `videobgm --help` builds a default RunParams
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    key = str(value).strip().lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise InputError(
        f"unknown language {value!r}; give one Whisper knows, as a code or a name "
        "(for example en, de, English or German)"
    )


def transcribe(
    audio_or_path: np.ndarray | str | os.PathLike[str],
    profile: str | models.ModelProfile = "auto",
    device: str | None = None,
    language: str | None = None,
    translate: bool = True,
    keep_original: bool = True,
    speech_filter: SpeechFilter = SpeechFilter(),
    temperature: float | tuple[float, ...] | None = None,
    progress: bool = True,
) -> Transcript:
    """Transcribe speech with the profile's Whisper.

    Takes a media path or 16 kHz mono float32 samples. ``language`` (a code or name Whisper
    knows, see :func:`normalise_language`) skips detection.
    For non-English speech with ``translate``, the English ``text`` comes from the profile's
    translating Whisper and, with ``keep_original``, the original-language transcript is kept in
    ``original_text`` (a second pass). ``temperature`` None means Whisper's fallback schedule
    (:data:`FALLBACK_TEMPERATURES`) for real models and greedy decoding for the tiny offline
    model, whose random output looks like a hallucination in every window and would otherwise
    be decoded six times over for nothing. Returns a :class:`Transcript` whose segments lie inside
    [0, duration] with positive length; digital silence returns an empty one without a model.
    """
    language = normalise_language(language)
    audio, duration_s = _audio(audio_or_path)
    if audio.size == 0 or float(np.max(np.abs(audio))) < SILENT_PEAK:
        return Transcript((), duration_s, None, "silence")
    profile = models.resolve_profile(profile)
    device = device or models.default_device()
    model = models.load_whisper(profile, device)
    if temperature is None:
        tiny = profile.whisper(device).startswith("tiny:")
        temperature = 0.0 if tiny else FALLBACK_TEMPERATURES
    options = _whisper_options(device, speech_filter, temperature, progress)
    with models.model_threads(profile.whisper(device), device):
        language, lang_prob = (language, None) if language else detect_language(model, audio)
        translating = translate and language != "en"
        original = None
        if keep_original or not translating:
            original = model.transcribe(audio, language=language, task="transcribe", **options)
    kept, dropped = _clean(original, speech_filter, duration_s) if original else ([], 0)
    source = f"whisper:{profile.whisper(device)}"
    if translating:
        translator = models.load_whisper(profile, device, translate=True)
        with models.model_threads(profile.whisper(device, translate=True), device):
            result = translator.transcribe(audio, language=language, task="translate", **options)
        translated, dropped_t = _clean(result, speech_filter, duration_s)
        kept, dropped = _pair(translated, kept), dropped + dropped_t
        source = f"whisper:{profile.whisper(device, translate=True)}"
    segments = tuple(
        Segment(s["start"], s["end"], s["text"], language, s.get("original", s["text"]), i,
                s["no_speech_prob"], s["avg_logprob"], s["compression_ratio"])
        for i, s in enumerate(kept)
    )  # fmt: skip
    extra = {"language_probability": lang_prob} if lang_prob is not None else {}
    return Transcript(segments, duration_s, language, source, translating, dropped, extra)


def _audio(audio_or_path) -> tuple[np.ndarray, float]:
    """16 kHz mono float32 samples and the media duration in seconds."""
    if isinstance(audio_or_path, np.ndarray):
        audio = np.ascontiguousarray(audio_or_path, dtype=np.float32)
        if audio.ndim != 1:
            raise InputError(f"audio must be mono samples, shape (samples,), not {audio.shape}")
        return audio, audio.size / SAMPLE_RATE
    info = media.probe(audio_or_path)
    if not info.has_audio:
        raise media.MediaError(audio_or_path, "has no audio stream to transcribe")
    audio = media.decode_audio(audio_or_path, sample_rate=SAMPLE_RATE, mono=True)
    # The container's duration, as media.probe and media.mux see it (the audio stream may
    # run a few milliseconds longer); every stage measures the video the same way.
    return audio, info.duration_s


def detect_language(model, audio: np.ndarray) -> tuple[str, float]:
    """The most probable spoken language in the first 30 s and its probability."""
    import whisper

    if not model.is_multilingual:
        return "en", 1.0
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), model.dims.n_mels)
    _, probs = model.detect_language(mel.to(model.device))
    best = max(probs, key=probs.get)
    return best, float(probs[best])


def _whisper_options(device: str, speech_filter: SpeechFilter, temperature, progress: bool):
    return dict(
        fp16=device.startswith("cuda"),  # fp16 on CPU only warns and falls back
        verbose=False if progress else None,  # False: Whisper's own progress bar; None: quiet
        temperature=temperature,
        condition_on_previous_text=False,  # conditioning feeds repetition loops
        **asdict(speech_filter),
    )


def _clean(result: dict, speech_filter: SpeechFilter, duration_s: float) -> tuple[list, int]:
    """Filtered segment dicts with times clamped to [0, duration] and positive length."""
    kept = []
    for seg in result["segments"]:
        start = min(max(float(seg["start"]), 0.0), duration_s)
        end = min(max(float(seg["end"]), start), duration_s)
        if end > start and speech_filter.keeps(seg):
            kept.append({**seg, "start": start, "end": end, "text": seg["text"].strip()})
    return kept, len(result["segments"]) - len(kept)


def _pair(english: list[dict], original: list[dict]) -> list[dict]:
    """Give each English segment the original-language text of the segments that overlap it
    most (each original segment goes to exactly one English segment)."""
    texts: list[list[str]] = [[] for _ in english]
    for seg in original:
        overlaps = [min(e["end"], seg["end"]) - max(e["start"], seg["start"]) for e in english]
        if overlaps and max(overlaps) > 0:
            texts[int(np.argmax(overlaps))].append(seg["text"])
    return [{**e, "original": " ".join(t)} for e, t in zip(english, texts, strict=True)]


# --------------------------------------------------------------------------- sidecar captions

_SRT_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_CUE_TIMING = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # <i>, <v Name>, <00:01.000>, {\an8}


def find_sidecar(media_path: str | os.PathLike[str]) -> Path | None:
    """A caption file next to the media: ``<stem>.srt``, ``<stem>.vtt``, ``<stem>.en.srt`` ..."""
    path = Path(media_path)
    for name in (path.stem, f"{path.stem}.en"):
        for suffix in SIDECAR_SUFFIXES:
            candidate = path.with_name(name + suffix)
            if candidate.is_file():
                return candidate
    return None


def read_captions(
    path: str | os.PathLike[str], duration_s: float | None = None, language: str = "en"
) -> Transcript:
    """Parse an ``.srt`` or ``.vtt`` caption file into a transcript.

    Cues are sorted by start; with ``duration_s`` they are clipped to it (cues entirely after
    the end are dropped). The text is taken as English unless ``language`` says otherwise (the
    classifier reads English; sidecar text is not translated). Raises InputError naming the
    file and line for a malformed file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SIDECAR_SUFFIXES:
        raise InputError(f"{path}: captions must be .srt or .vtt, not {suffix or 'no suffix'!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: caption file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: captions are not UTF-8 text ({exc.reason})") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if suffix == ".vtt":
        if not lines[0].startswith("WEBVTT"):
            raise InputError(f"{path}: line 1: a WebVTT file must start with 'WEBVTT'")
        lines[0] = ""
    cues = _parse_cues(path, lines, vtt=suffix == ".vtt")
    if not cues:
        raise InputError(f"{path}: contains no caption cues")
    cues.sort(key=lambda cue: cue[0])
    if duration_s is None:
        duration_s = max(end for _, end, _ in cues)
    kept = [(s, min(e, duration_s), t) for s, e, t in cues if s < duration_s and t]
    segments = tuple(Segment(s, e, t, language, t, i) for i, (s, e, t) in enumerate(kept))
    return Transcript(segments, duration_s, language, str(path), dropped=len(cues) - len(kept))


def _parse_cues(path: Path, lines: list[str], vtt: bool) -> list[tuple[float, float, str]]:
    """(start, end, text) per cue; blocks are separated by blank lines."""
    cues = []
    block: list[tuple[int, str]] = []
    for number, line in enumerate([*lines, ""], start=1):
        if line.strip():
            block.append((number, line))
        elif block:
            cue = _parse_block(path, block, vtt)
            if cue is not None:
                cues.append(cue)
            block = []
    return cues


def _parse_block(path: Path, block: list[tuple[int, str]], vtt: bool):
    first = block[0][1].strip()
    if vtt and first.split(" ")[0] in ("NOTE", "STYLE", "REGION"):
        return None
    timing = next((i for i, (_, line) in enumerate(block[:2]) if "-->" in line), None)
    if timing is None:
        number = block[0][0]
        raise InputError(f"{path}: line {number}: expected a cue timing 'start --> end'")
    number, line = block[timing]
    match = _CUE_TIMING.match(line)
    if match is None:
        raise InputError(f"{path}: line {number}: malformed cue timing {line.strip()!r}")
    start, end = _seconds(match.groups()[:4]), _seconds(match.groups()[4:])
    if start is None or end is None:
        raise InputError(f"{path}: line {number}: impossible time in cue timing {line.strip()!r}")
    if end < start:
        raise InputError(f"{path}: line {number}: cue ends ({end:.3f} s) before it starts")
    text = " ".join(_TAG.sub("", line).strip() for _, line in block[timing + 1 :])
    return start, end, " ".join(text.split())


def _seconds(groups: Sequence[str | None]) -> float | None:
    """Seconds from (hours, minutes, seconds, milliseconds); None when a field is out of range."""
    hours, minutes, seconds, millis = groups
    if int(seconds) >= 60 or (hours is not None and int(minutes) >= 60):
        return None
    whole = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    return whole + int(millis.ljust(3, "0")) / 1000  # "5" after the comma means 500 ms


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(transcript: Transcript) -> Transcript:
    """Cut segments that hold several sentences (caption cues often do) at ``.``, ``!``, ``?``.

    Each sentence gets a share of its segment's time in proportion to its characters. Segments
    whose English text is a translation stay whole (their original text would not line up).
    """
    pieces: list[Segment] = []
    for seg in transcript:
        sentences = [s for s in _SENTENCE_END.split(seg.text) if s.strip()]
        if len(sentences) < 2 or seg.text != seg.original_text:
            pieces.append(replace(seg, id=len(pieces)))
            continue
        weights = np.cumsum([0] + [len(s) for s in sentences]) / sum(len(s) for s in sentences)
        times = seg.start + weights * seg.duration_s
        times[-1] = seg.end
        for text, start, end in zip(sentences, times, times[1:], strict=False):
            pieces.append(replace(seg, start=float(start), end=float(end), text=text,
                                  original_text=text, id=len(pieces)))  # fmt: skip
    return replace(transcript, segments=tuple(pieces))


# --------------------------------------------------------------------------- the stage


def transcript_for(
    path: str | os.PathLike[str],
    profile: str | models.ModelProfile = "auto",
    sidecar: str | os.PathLike[str] | bool | None = None,
    **whisper_options,
) -> Transcript:
    """The transcript of a media file: its sidecar captions when there are any, else Whisper.

    ``sidecar``: None looks for ``<stem>.srt`` / ``<stem>.vtt`` next to the file, a path uses
    that file, False always transcribes. ``whisper_options`` go to :func:`transcribe`.
    """
    if sidecar is True:
        raise InputError("sidecar must be a caption path, None (look next to the video) or False")
    captions = find_sidecar(path) if sidecar is None else (Path(sidecar) if sidecar else None)
    if captions is None:
        return transcribe(path, profile, **whisper_options)
    duration_s = media.probe(path).duration_s
    log.info("using the captions in %s instead of transcribing", captions)
    language = normalise_language(whisper_options.get("language")) or "en"
    return read_captions(captions, duration_s, language)


# --------------------------------------------------------------------------- JSON


def save_transcript(transcript: Transcript, path: str | os.PathLike[str]) -> Path:
    """Write a transcript as JSON, atomically; return the path."""
    doc = {"version": TRANSCRIPT_VERSION, **asdict(transcript)}
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)


def load_transcript(path: str | os.PathLike[str]) -> Transcript:
    """Read a transcript written by :func:`save_transcript`."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if doc.pop("version") != TRANSCRIPT_VERSION:
            raise InputError(f"{path}: transcript written by another version of videobgm")
        names = {f.name for f in fields(Segment)}
        segments = tuple(
            Segment(**{k: v for k, v in s.items() if k in names}) for s in doc.pop("segments")
        )
        return Transcript(segments=segments, **doc)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: not a readable transcript ({exc})") from None


# --------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    """``videobgm transcribe MEDIA [-o transcript.json]``."""
    parser = subparsers.add_parser(
        "transcribe", help="speech to text (Whisper, or the video's .srt/.vtt captions)"
    )
    parser.add_argument("media", help="video or audio file")
    parser.add_argument("-o", "--output", help="transcript JSON (default: <stem>.transcript.json)")
    parser.add_argument("--profile", default="auto", help="auto | pretrained | tiny (default auto)")
    parser.add_argument("--language", default=None, help="spoken language code; skips detection")
    add_sidecar_arguments(parser)
    parser.set_defaults(func=_cli_transcribe)


def add_sidecar_arguments(parser) -> None:
    """``--sidecar FILE`` / ``--no-sidecar`` (shared with ``videobgm timeline``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--sidecar", default=None, help="captions to use instead of Whisper (default: "
        "<stem>.srt or <stem>.vtt next to the video, when present)",
    )  # fmt: skip
    group.add_argument(
        "--no-sidecar",
        dest="sidecar",
        action="store_false",
        help="transcribe even if captions exist",
    )


def _cli_transcribe(args) -> int:
    transcript = transcript_for(args.media, args.profile, args.sidecar, language=args.language)
    output = args.output or f"{Path(args.media).stem}.transcript.json"
    save_transcript(transcript, output)
    for seg in transcript:
        print(f"{seg.start:8.2f} {seg.end:8.2f}  {seg.text}")
    print(f"{len(transcript)} segments ({transcript.source}) -> {output}")
    return 0

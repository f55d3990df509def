"""The end of a curation run: the dataset's metadata, failure log, card and manifest, and its
optional upload to the Hugging Face Hub.

:func:`finish` joins the per-track shard records in catalogue order into
``train/metadata.jsonl`` (streamed: memory does not grow with the catalogue), writes
``failures.jsonl``, ``manifest.json`` and the dataset card ``README.md``, and removes what no
longer belongs to the dataset (images and records of tracks no longer selected). Nothing it
writes depends on timing or on the number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from videobgm import __version__, paths
from videobgm.dataset.clips import FORMAT, read_record
from videobgm.errors import InputError

OUTPUTS = ("README.md", "manifest.json", "failures.jsonl", "train/metadata.jsonl")
TOKEN_ENV = "HF_TOKEN"  # the only place push_to_hub takes a token from


def finish(out: Path, catalogue, selection, jobs, params) -> dict:
    """Write the metadata, failure log, manifest and card of ``out``; return the summary
    (the manifest's content). Raises InputError when no clip was made."""
    train = paths.ensure_dir(out / "train")
    tracks = Counter()
    clips, per_mood, failures, short, listed = Counter(), Counter(), [], [], set()
    with paths.atomic_output(train / "metadata.jsonl") as tmp, tmp.open("w") as sink:
        for chosen, job in zip(selection, jobs, strict=True):
            record = read_record(out, job.stem) or {"status": "failed", "error": "not processed"}
            status = record["status"] if record.get("key", job.key) == job.key else "failed"
            tracks[status] += 1
            if status == "ok":
                per_mood[chosen.mood] += 1
            elif status == "short":
                short.append(job.track_id)
            else:
                failures.append({"track_id": job.track_id, "audio": job.audio} | _error(record))
            for row in record.get("rows", []) if status == "ok" else []:
                sink.write(json.dumps(row) + "\n")
                listed.add(row["file_name"])
                clips[chosen.mood] += 1
    _remove_stale(out, listed, {job.stem for job in jobs})
    with paths.atomic_output(out / "failures.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(f) + "\n" for f in failures))
    summary = _summary(out, catalogue, params, tracks, per_mood, clips, short, len(selection))
    with paths.atomic_output(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    with paths.atomic_output(out / "README.md") as tmp:
        tmp.write_text(card(summary), encoding="utf-8")
    if not listed:
        raise InputError(
            f"no clip was made in {out}: {tracks['failed']} track(s) failed and "
            f"{tracks['short']} were shorter than {params.duration_s} s (see failures.jsonl)"
        )
    return summary


def _error(record: dict) -> dict:
    return {"error": record.get("error", "processed with other inputs; run again")}


def _remove_stale(out: Path, listed: set[str], stems: set[str]) -> None:
    for png in (out / "train").glob("*.png"):
        if png.name not in listed:
            png.unlink()
    for shard in (out / "shards").glob("*.json"):
        if shard.stem not in stems:
            shard.unlink()


def _summary(out, catalogue, params, tracks, per_mood, clips, short, selected) -> dict:
    metadata = (out / "train" / "metadata.jsonl").read_bytes()
    spec = dataclasses.asdict(params)
    spec["moods"] = list(params.moods)
    return {
        "format": FORMAT,
        "videobgm": __version__,
        "source": {
            "name": catalogue.source,
            "tables": [Path(f).name for f in catalogue.files],
            "tracks": len(catalogue.tracks),
            "duplicates_dropped": catalogue.duplicates,
        },
        "params": spec | {"window_px": params.window_px, "duration_s": params.duration_s},
        "tracks": {
            "selected": selected,
            "ok": tracks["ok"],
            "short": tracks["short"],
            "failed": tracks["failed"],
            "per_mood": {m: per_mood[m] for m in params.moods},
        },
        "clips": {"total": sum(clips.values()), "per_mood": {m: clips[m] for m in params.moods}},
        "short_tracks": short,
        "metadata_sha256": hashlib.sha256(metadata).hexdigest(),
    }


_LICENCE = """\
**Licence caveat.** The images are derived from the catalogue's recordings. Music from a
commercial library (such as the Epidemic Sound tracks behind `Chr0my/Epidemic_music`) is not
ours to redistribute: keep such a dataset private, use it for research only, and check the
catalogue's licence before publishing it or a model trained on it. The synthetic catalogue's
music is made by videobgm's procedural synthesiser and carries no such restriction."""


def card(summary: dict) -> str:
    """The dataset card: YAML header for the Hub, counts per mood, parameters, licence."""
    p, t, c = summary["params"], summary["tracks"], summary["clips"]
    size = "n<1K" if c["total"] < 1000 else "1K<n<10K" if c["total"] < 10000 else "10K<n<100K"
    header = [
        "---",
        "license: other",
        "task_categories:",
        "- text-to-image",
        "tags:",
        "- riffusion",
        "- spectrogram",
        "- music",
        "size_categories:",
        f"- {size}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: train/*",
        "---",
        "",
    ]
    rows = [f"| {m} | {t['per_mood'][m]} | {c['per_mood'][m]} |" for m in p["moods"]]
    spec = p["spectrogram"]
    body = f"""# Spectrogram + caption dataset (riffusion format)

Mood-captioned spectrogram images for a riffusion mood LoRA, made by `videobgm curate` from the
catalogue `{summary["source"]["name"]}` ({summary["source"]["tracks"]} tracks). Each image is
{p["window_px"]} x {spec["num_frequencies"]} px: {p["duration_s"]} s at 10 ms per column, mel bands
from {spec["min_frequency"]} to {spec["max_frequency"]} Hz, riffusion's format with its parameters
in EXIF. Each caption is `"<mood>, <tag>, <tag>, ..."`.

| mood | tracks | clips |
| --- | ---: | ---: |
{chr(10).join(rows)}
| **all** | **{t["ok"]}** | **{c["total"]}** |

- tracks selected (mood rule `{p["mood_rule"]}`): {t["selected"]}
- skipped, shorter than one clip: {t["short"]}
- failed, could not be fetched or decoded: {t["failed"]} (listed in `failures.jsonl`)

## How it was made

{p["clips_per_track"]} random windows of {p["duration_s"]} s per track (seed {p["seed"]}); the
audio was resampled to {p["sample_rate"]} Hz (mono) and rendered at {spec["sample_rate"]} Hz.
`manifest.json` holds every parameter. The same command gives the same files, byte for byte:

```bash
videobgm curate --source {summary["source"]["name"]} --out DIR --moods {" ".join(p["moods"])} \\
  --mood-rule {p["mood_rule"]} --clips-per-track {p["clips_per_track"]} \\
  --window-s {p["window_s"]} --sample-rate {p["sample_rate"]} --seed {p["seed"]}{_optional(p)}
```

## Use

```python
import datasets
rows = datasets.load_dataset("imagefolder", data_dir="DIR", split="train")  # image, text, ...
```

diffusers' `train_text_to_image_lora.py --train_data_dir DIR` reads it as it is (columns
`image` and `text`).

{_LICENCE}
"""
    return "\n".join(header) + body


def _optional(p: dict) -> str:
    extra = f" --limit {p['limit']}" if p["limit"] is not None else ""
    return extra + (f" --max-tags {p['max_tags']}" if p["max_tags"] is not None else "")


def push_to_hub(out: str | Path, repo_id: str, *, private: bool = True) -> str:
    """Upload a written dataset (``train/``, ``README.md``, ``manifest.json``) to the Hub as a
    dataset repository, private by default; return its URL. The token comes only from
    ``$HF_TOKEN``. Raises InputError when it is unset or the upload fails."""
    out = Path(out)
    if not (out / "train" / "metadata.jsonl").is_file():
        raise InputError(f"{out} holds no curated dataset (train/metadata.jsonl is missing)")
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise InputError(f"set ${TOKEN_ENV} to a Hugging Face write token to push {out}")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(out),
            repo_id=repo_id,
            repo_type="dataset",
            allow_patterns=["train/*", "README.md", "manifest.json"],
            commit_message="videobgm curate: spectrogram + caption dataset",
        )
    except Exception as exc:  # offline, no rights, bad id: the user can only fix it there
        raise InputError(f"could not push {out} to the Hub dataset {repo_id!r} ({exc})") from None
    return f"https://huggingface.co/datasets/{repo_id}"

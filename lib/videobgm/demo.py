"""``make demo``: notebook 04 on the demo sample, executed with papermill into ``reports/``.

Prints where everything went: the executed notebook and its HTML, the new video(s), the stems
and the run folder. With the pretrained models when their weights are reachable; otherwise the
offline path (the sample's captions and intended timeline, procedural music, spectral voice
isolation), announced by the banner.
"""

from __future__ import annotations

import argparse
import sys

from videobgm import paths, pipeline, reports
from videobgm.models import profiles as models

NOTEBOOK = "04-generate-bgm-for-video.ipynb"
OUTPUT_DIR = "reports/demo"  # relative to the repository root
VARIANTS = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videobgm.demo", description=__doc__)
    parser.add_argument("--profile", default="auto", help="auto | pretrained | tiny")
    args = parser.parse_args(argv)
    stages = pipeline.RunParams(variants=VARIANTS).model_stages()
    profile = models.resolve_profile(args.profile, stages=stages)  # the banner, before the notebook
    video = paths.demo_video()
    settings = {"profile": profile.name, "variants": VARIANTS}
    print(f"videobgm demo: {video.name} with the {profile.name!r} profile")
    executed = reports.execute(
        paths.notebooks() / NOTEBOOK, profile.name,
        {"video_path": str(video.relative_to(paths.root())), "output_dir": OUTPUT_DIR,
         "variants": VARIANTS, "widgets": False},
    )  # fmt: skip
    html = reports.to_html(executed)
    out_dir = paths.root() / OUTPUT_DIR
    # Every stage is cached: this only collects the paths of what the notebook made.
    result = pipeline.run(video, pipeline.output_in(out_dir, video), progress=False, **settings)
    if any(state == "ran" for state in result.stages.values()):
        print("warning: the notebook's run was not complete; stages ran again", file=sys.stderr)
    print(f"\nexecuted notebook  {executed}\nHTML               {html}")
    print(f"music backend      {result.music} (profile {result.profile})")
    for path in result.outputs:
        print(f"new video          {path}")
    first = result.outputs[0]
    for stem in ("voice", "bgm", "mix"):
        print(f"{stem + ' stem':18} {first.with_name(f'{first.stem}.{stem}.wav')}")
    print(f"run folder         {result.run_dir} (report.md, timeline, plan)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

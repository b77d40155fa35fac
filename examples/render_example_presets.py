"""Render every bundled example preset to a 24-bit WAV file.

Usage: python examples/render_example_presets.py -o example_renders/
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from sds_audio.audio_io import save_audio
from sds_audio.errors import SDSAudioError
from sds_audio.presets import load_preset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="example_renders", help="output directory")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    presets = sorted(resources.files("sds_audio").joinpath("assets/presets").iterdir(), key=lambda p: p.name)
    try:
        for path in presets:
            if not path.name.endswith(".json"):
                continue
            preset = load_preset(Path(str(path)))
            audio = preset.render()
            wav = out / (path.name[:-5] + ".wav")
            save_audio(wav, audio, preset.sample_rate)
            print(f"{wav}  {preset.provenance.get('description', '')}  "
                  f"({preset.duration_s:.2f} s, peak {float(audio.abs().max()):.2f})")
    except SDSAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

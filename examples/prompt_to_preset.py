"""Prompt -> FM or impact preset with the Python API (what `sds-audio fm` / `impact` do, spelled out).

Usage:
    python examples/prompt_to_preset.py "kick drum, bass, reverb" --synth fm -o kick/
    python examples/prompt_to_preset.py "hitting a pot with a wooden spoon" --synth impact -o pot/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sds_audio
from sds_audio.audio_io import save_audio
from sds_audio.jobs import load_judge_scorer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--synth", choices=("fm", "impact"), default="fm")
    parser.add_argument("-o", "--output", default="preset_out")
    parser.add_argument("--prior", default="embedded", help="embedded, stable-audio-open, or a prior directory")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration-s", type=float, default=1.5)
    args = parser.parse_args()
    try:
        prior = sds_audio.load_prior(args.prior)
        judge, _ = load_judge_scorer(True, prior.device)  # picks the best of the restarts; None if not shipped
        # render at the prior's rate and channel count: nothing is resampled inside the loop
        if args.synth == "fm":
            synth = sds_audio.FMSynth(n_operators=4, sample_rate=prior.sample_rate, channels=prior.channels)
        else:
            synth = sds_audio.ImpactSynth(n_modes=64, n_bands=16, sample_rate=prior.sample_rate,
                                          channels=prior.channels, seed=args.seed)
        config = sds_audio.SynthesisConfig(steps=args.steps, restarts=4, duration_s=args.duration_s, seed=args.seed,
                                           sds=sds_audio.SDSConfig(denoise_steps=4, guidance_scale=5.0))
        result = sds_audio.synthesize(synth, args.prompt, prior, config, judge=judge)
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        sds_audio.save_preset(out / "preset.json", result.synth, index=result.best_index, duration_s=args.duration_s,
                              provenance={"prompt": args.prompt, "prior": args.prior, "seed": args.seed})
        save_audio(out / "sound.wav", result.audio, synth.sample_rate)
    except sds_audio.SDSAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scores = f"judge {result.judge_initial[result.best_index]:.3f} -> {result.judge_final[result.best_index]:.3f}" \
        if result.judge_final else "no judge"
    print(f"wrote {out}/preset.json and sound.wav ({result.seconds:.0f} s, {scores})")
    # the preset re-renders anywhere: sds_audio.load_preset(out / "preset.json").render()
    return 0


if __name__ == "__main__":
    sys.exit(main())

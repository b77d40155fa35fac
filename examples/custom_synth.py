"""A synth of your own, driven by Audio-SDS: any Synth subclass works with `synthesize`.

This one is a tiny subtractive voice: a band-limited sawtooth (additive, harmonics
below Nyquist) plus white noise, through a decaying amplitude envelope, with a
spectral tilt standing in for a low-pass filter. Its parameters are declared as
ParamSpec data (name, unit, range, scale), which is all the optimiser needs.

Usage: python examples/custom_synth.py "synth bass" -o custom/ [--prior embedded] [--steps 150]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

import sds_audio
from sds_audio.audio_io import save_audio
from sds_audio.synths import ParamSpec, Synth
from sds_audio.synths.dsp import attack_decay_envelope

N_HARMONICS = 48


class SawNoiseSynth(Synth):
    """Sawtooth + noise through an attack/decay envelope, with a spectral tilt."""

    synth_type = "saw_noise"

    def __init__(self, sample_rate: int = 22050, channels: int = 1, batch_size: int = 1):
        specs = [
            ParamSpec("f0_hz", "Hz", 30.0, 2000.0, 110.0, "log", "fundamental frequency"),
            ParamSpec("tilt_db_per_oct", "dB/oct", -24.0, 0.0, -6.0, "linear", "harmonic roll-off (the 'filter')"),
            ParamSpec("noise_mix", "", 0.0, 1.0, 0.1, "linear", "noise share of the output"),
            ParamSpec("attack_s", "s", 0.001, 0.5, 0.005, "log", "rise time"),
            ParamSpec("decay_s", "s", 0.05, 4.0, 0.5, "log", "time to fall 60 dB"),
        ]
        super().__init__(specs, batch_size=batch_size, sample_rate=sample_rate, channels=channels)

    def render(self, controls, n_samples):
        t_s = torch.arange(n_samples, dtype=torch.float32, device=controls["f0_hz"].device) / self.sample_rate
        k = torch.arange(1, N_HARMONICS + 1, dtype=torch.float32, device=t_s.device)            # (H,)
        f_k = controls["f0_hz"][:, None] * k                                                      # (B, H)
        gain_k = 10 ** (controls["tilt_db_per_oct"][:, None] * torch.log2(k) / 20) / k           # saw: 1/k
        gain_k = gain_k * torch.sigmoid((0.45 * self.sample_rate - f_k) / 50.0)                   # no aliasing
        saw = torch.einsum("bh,bht->bt", gain_k, torch.sin(2 * math.pi * f_k[..., None] * t_s))
        saw = saw / gain_k.sum(-1, keepdim=True).clamp(min=1e-6)
        noise = torch.randn(n_samples, generator=torch.Generator().manual_seed(0)).to(t_s.device)
        mix = controls["noise_mix"][:, None]
        env = attack_decay_envelope(t_s, controls["attack_s"], controls["decay_s"], torch.zeros_like(mix[:, 0]))
        voice = 0.8 * env * ((1 - mix) * saw + mix * 0.3 * noise)
        return voice[:, None, :].expand(-1, self.channels, -1)

    def config(self):
        return {"sample_rate": self.sample_rate, "channels": self.channels}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("-o", "--output", default="custom_synth_out")
    parser.add_argument("--prior", default="embedded")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--duration-s", type=float, default=1.5)
    args = parser.parse_args()
    try:
        prior = sds_audio.load_prior(args.prior)
        synth = SawNoiseSynth(sample_rate=prior.sample_rate, channels=prior.channels)
        config = sds_audio.SynthesisConfig(steps=args.steps, restarts=4, duration_s=args.duration_s)
        result = sds_audio.synthesize(synth, args.prompt, prior, config)
    except sds_audio.SDSAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    save_audio(out / "sound.wav", result.audio, synth.sample_rate)
    with torch.no_grad():
        best = result.best_synth.controls()
    print(f"wrote {out}/sound.wav; kept restart {result.best_index}:")
    for name, spec in synth.param_specs.items():
        print(f"  {name:16s} {float(best[name][0]):10.4g} {spec.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the bundled example presets in sds_audio/assets/presets/ were designed (by hand).

Re-running this script rewrites them (atomically). Usage: python examples/make_example_presets.py
"""
import math, numpy as np, torch
from sds_audio.synths import FMSynth, ImpactSynth
from sds_audio.presets import save_preset
out = "sds_audio/assets/presets"
prov = {"prompt": None, "prior": None, "seed": None, "steps": 0, "made_by": "hand-designed example"}

def z(n): return torch.zeros(n, n)
# --- FM bass: carrier + decaying modulator at 1:1 with a little feedback
s = FMSynth()
m = z(4); m[1, 0] = 2.2; m[2, 0] = 0.6
s.set_controls(dict(f0_hz=55.0, ratio=[1.0, 1.0, 2.0, 1.0], mod_index=m, feedback=[0, 0.35, 0, 0],
    level=[1.0, 0, 0, 0], attack_s=[0.004, 0.002, 0.002, 0.01], decay_s=[1.4, 0.45, 0.25, 1.0],
    sustain=[0.55, 0.25, 0.0, 0.0], pitch_env_semitones=2.0, pitch_decay_s=0.03, stereo_spread=0.0))
save_preset(f"{out}/fm_bass.json", s, duration_s=1.5, provenance={**prov, "description": "plucky FM bass, A1"})
# --- FM bell: 1 : 3.5 modulator, long decay, a second inharmonic pair for shimmer
s = FMSynth()
m = z(4); m[1, 0] = 3.2; m[3, 2] = 2.0
s.set_controls(dict(f0_hz=440.0, ratio=[1.0, 3.5, 2.0, 7.11], mod_index=m, feedback=[0, 0, 0, 0],
    level=[1.0, 0, 0.35, 0], attack_s=[0.001, 0.001, 0.001, 0.001], decay_s=[4.0, 2.5, 2.5, 1.2],
    sustain=[0, 0, 0, 0], pitch_env_semitones=0.0, pitch_decay_s=0.1, stereo_spread=0.0))
save_preset(f"{out}/fm_bell.json", s, duration_s=3.0, provenance={**prov, "description": "FM tubular bell, A4"})
# --- FM kick: fast downward pitch sweep, short body, click from a brief noisy modulator
s = FMSynth()
m = z(4); m[1, 0] = 1.2; m[2, 1] = 4.0
s.set_controls(dict(f0_hz=48.0, ratio=[1.0, 1.6, 7.3, 1.0], mod_index=m, feedback=[0, 0, 0.9, 0],
    level=[1.0, 0, 0, 0], attack_s=[0.001, 0.001, 0.001, 0.01], decay_s=[0.45, 0.04, 0.02, 1.0],
    sustain=[0, 0, 0, 0], pitch_env_semitones=30.0, pitch_decay_s=0.09, stereo_spread=0.0))
save_preset(f"{out}/fm_kick.json", s, duration_s=0.8, provenance={**prov, "description": "FM kick drum"})

rng = np.random.default_rng(7)
def impact(n_modes, freqs, decays, amps, bands, dry, seed, name, desc, dur):
    s = ImpactSynth(n_modes=n_modes, n_bands=len(bands[0]), seed=seed)
    s.set_controls(dict(mode_freq_hz=freqs, mode_decay_s=decays, mode_amp=amps,
        band_center_hz=bands[0], band_width_oct=bands[1], band_decay_s=bands[2], band_amp=bands[3], dry_gain=dry))
    save_preset(f"{out}/{name}.json", s, duration_s=dur, provenance={**prov, "description": desc})

# --- wooden knock: free-bar partials of a ~420 Hz block plus weak random modes, all short
n = 64
base = 420.0 * np.array([1.0, 2.76, 5.40, 8.93, 13.34])
f = np.concatenate([base, rng.uniform(300, 6000, n - len(base))])
d = np.concatenate([[0.16, 0.09, 0.06, 0.045, 0.03], rng.uniform(0.01, 0.05, n - len(base))])
a = np.concatenate([[0.45, 0.22, 0.12, 0.06, 0.03], rng.uniform(1e-3, 0.01, n - len(base))])
nb = 16
bands = (np.geomspace(150, 9000, nb), np.full(nb, 0.6), np.geomspace(0.35, 0.12, nb), np.full(nb, 0.05))
impact(n, f, d, a, bands, 0.9, 1, "impact_wood_knock", "knock on a wooden block in a small room", 0.8)
# --- metal clang: dense inharmonic plate-like partials with long decays, medium room
k = np.arange(1, n + 1)
f = 310.0 * (k ** 1.35) * rng.uniform(0.97, 1.03, n)
f = np.clip(f, 20, 15000)
d = np.clip(2.8 / (1 + 0.04 * k) * rng.uniform(0.8, 1.2, n), 0.002, 10)
a = np.clip(0.2 / k ** 0.8 * rng.uniform(0.5, 1.0, n), 1e-4, 1)
bands = (np.geomspace(120, 12000, nb), np.full(nb, 0.7), np.geomspace(1.6, 0.5, nb), np.full(nb, 0.12))
impact(n, f, d, a, bands, 0.8, 2, "impact_metal_clang", "clang of a struck metal pan", 2.5)
print("ok")

"""ImpactSynth: a struck object (modal impulse) heard through a noise-band reverb.

For one candidate::

    object(t) = sum_m mode_amp_m * g(mode_freq_hz_m) * exp(-ln(1000) t / mode_decay_s_m) * sin(2 pi mode_freq_hz_m t)
    reverb(t) = sum_b band_amp_b * [noise band-passed around band_center_hz_b, band_width_oct_b wide,
                                    decaying with T60 band_decay_s_b, unit energy]
    out_c(t)  = object * (dry_gain * delta + reverb_c)          (first n_samples of the convolution)

* ``g`` is :func:`~sds_audio.synths.dsp.nyquist_gain`: modes above ~0.48 x the
  sample rate are muted smoothly instead of aliasing.
* The modal sum is a block-factorised complex matrix product
  (:func:`~sds_audio.synths.dsp.damped_mode_sum`): no ``(batch, modes, samples)``
  tensor is formed, phases are wrapped in float64, and modes are processed in
  checkpointed chunks of 256, so 2048 modes fit in little memory.
* The reverb noise is white noise drawn from a ``torch.Generator`` seeded with
  ``seed`` (one independent stream per channel, so the channels are decorrelated)
  at every render; the same ``seed`` and ``n_samples`` re-render bit-identically,
  also in a fresh instance. Bands are Gaussian in log-frequency, applied to the
  noise's STFT, so centre and width have gradients
  (:func:`~sds_audio.synths.dsp.noise_band_impulse`).
* Samples below 1e-20 are flushed to exactly 0 (:func:`~sds_audio.synths.dsp.flush_tiny`):
  long renders of short decays would otherwise end in subnormal floats, whose STFT
  bins give NaN gradients in PyTorch's complex ``abs``.
* The convolution is ``torchaudio.functional.fftconvolve`` (padded to a fast FFT
  length). ``object * (dry * delta)`` is computed as ``dry * object``, which is the
  same thing without an FFT.

**Normalisation.** Amplitudes are absolute: the object impulse is bounded by
``sum_m mode_amp_m`` and each reverb band has unit energy at ``band_amp = 1`` (the
wet signal then has roughly the object's energy per unit of ``band_amp**2``). The
default patch (mode amplitudes summing to 1, 16 bands at 0.1, ``dry_gain`` 0.8)
peaks below 1; sums of many loud modes can exceed 1.

**Defaults** (a small struck metal bar in a room): modes log-spaced over 150 Hz -
10 kHz with a slight inharmonic stretch, amplitudes falling as ``1/sqrt(m+1)``
and summing to 1, T60 from 1.5 s (lowest) falling with frequency; bands
log-spaced over 100 Hz - 12 kHz, one spacing wide, T60 1.2 s (low) to 0.4 s (high).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from ..errors import SDSAudioError

from . import dsp
from .base import Synth
from .params import ParamSpec

MAX_MODES = 2048
MAX_BANDS = 256


def _log_spaced(lo: float, hi: float, n: int) -> torch.Tensor:
    if n == 1:
        return torch.tensor([math.sqrt(lo * hi)])
    return torch.logspace(math.log10(lo), math.log10(hi), n, dtype=torch.float64).float()


class ImpactSynth(Synth):
    """Modal impact model (``n_modes`` damped sinusoids) convolved with a noise-band reverb.

    Args:
        n_modes: damped sinusoids in the object impulse (1 to 2048).
        n_bands: decaying noise bands in the reverb impulse (1 to 256).
        sample_rate: output rate in Hz.
        channels: 1 or 2 (reverb noise is independent per channel).
        batch_size: candidate patches rendered at once.
        seed: seed of the reverb noise (part of the patch: presets store it in the config).

    Parameters (unit, range, scale; shape ``(n_modes,)`` or ``(n_bands,)``):
        ``mode_freq_hz`` Hz [20, 20000] log; ``mode_decay_s`` (T60) s [0.002, 10] log;
        ``mode_amp`` [1e-4, 1] log; ``band_center_hz`` Hz [50, 16000] log;
        ``band_width_oct`` octaves (FWHM) [0.1, 4] log; ``band_decay_s`` (T60) s [0.05, 10] log;
        ``band_amp`` [1e-4, 1] log; ``dry_gain`` [0, 1] linear (scalar).
    """

    synth_type = "impact"
    can_reseed = True
    #: modes per checkpointed chunk of the modal sum
    mode_chunk = 256

    def __init__(self, n_modes: int = 64, n_bands: int = 16, sample_rate: int = 44100, channels: int = 2,
                 batch_size: int = 1, seed: int = 0):
        for name, value, hi in (("n_modes", n_modes, MAX_MODES), ("n_bands", n_bands, MAX_BANDS)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise SDSAudioError(f"{name} must be an integer from 1 to {hi}, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 31:
            raise SDSAudioError(f"seed must be an integer in [0, 2**31), got {seed!r}")
        m, b = (n_modes,), (n_bands,)
        specs = [
            ParamSpec("mode_freq_hz", "Hz", 20.0, 20000.0, 440.0, "log", "frequency of each object mode", m),
            ParamSpec("mode_decay_s", "s", 0.002, 10.0, 0.5, "log", "T60 of each object mode", m),
            ParamSpec("mode_amp", "", 1e-4, 1.0, 0.01, "log", "initial amplitude of each object mode", m),
            ParamSpec("band_center_hz", "Hz", 50.0, 16000.0, 1000.0, "log", "centre of each reverb noise band", b),
            ParamSpec("band_width_oct", "octaves", 0.1, 4.0, 1.0, "log",
                      "width of each reverb band (full width at half magnitude)", b),
            ParamSpec("band_decay_s", "s", 0.05, 10.0, 1.0, "log", "T60 of each reverb band", b),
            ParamSpec("band_amp", "", 1e-4, 1.0, 0.1, "log", "level of each reverb band (1 = unit energy)", b),
            ParamSpec("dry_gain", "", 0.0, 1.0, 0.8, "linear", "level of the direct (unreverberated) object sound"),
        ]
        super().__init__(specs, batch_size=batch_size, sample_rate=sample_rate, channels=channels)
        self.n_modes = n_modes
        self.n_bands = n_bands
        self.seed = seed
        self._noise_cache: tuple[tuple, torch.Tensor] | None = None
        self.set_controls(self._default_patch())

    def _default_patch(self) -> dict[str, torch.Tensor]:
        m = torch.arange(self.n_modes, dtype=torch.float64)
        freq = _log_spaced(150.0, 10000.0, self.n_modes).double() * (1.0 + 0.03 * torch.sin(2.7 * m))
        freq = freq.clamp(20.0, 20000.0)
        amp = 1.0 / torch.sqrt(m + 1.0)
        amp = (amp / amp.sum()).clamp(1e-4, 1.0)
        decay = (1.5 * (freq / 150.0) ** -0.5).clamp(0.002, 10.0)
        centre = _log_spaced(100.0, 12000.0, self.n_bands).double()
        width = float(min(4.0, max(0.5, math.log2(12000.0 / 100.0) / max(1, self.n_bands - 1))))
        bdecay = torch.linspace(1.2, 0.4, self.n_bands, dtype=torch.float64)
        return {"mode_freq_hz": freq.float(), "mode_amp": amp.float(), "mode_decay_s": decay.float(),
                "band_center_hz": centre.float(), "band_width_oct": torch.full((self.n_bands,), width),
                "band_decay_s": bdecay.float()}

    def config(self) -> dict[str, Any]:
        return {"n_modes": self.n_modes, "n_bands": self.n_bands, "sample_rate": self.sample_rate,
                "channels": self.channels, "seed": self.seed}

    @torch.no_grad()
    def reseed_toward_(self, target_spectrum: torch.Tensor, spectra: torch.Tensor, hz_per_bin: float,
                       fraction: float) -> dict[str, torch.Tensor]:
        """Matching pursuit's move: in each candidate, the ``fraction`` of the modes that sit where
        the target is quietest (its magnitude at the mode's frequency; above the anti-alias cutoff,
        or within two bins of a stronger mode, counts as silent; ties: the weakest mode first) jump
        onto the largest peaks of ``relu(target - candidate)``, with the candidate's median decay
        and geometric-mean amplitude; the gradient then refines them.

        See :meth:`Synth.reseed_toward_` for the arguments; the masks cover ``mode_freq_hz``,
        ``mode_decay_s`` and ``mode_amp``.
        """
        if target_spectrum.dim() != 1 or spectra.shape != (self.batch_size, target_spectrum.shape[0]):
            raise ValueError(f"need target_spectrum (bins,) and spectra (batch={self.batch_size}, bins), got "
                             f"{tuple(target_spectrum.shape)} and {tuple(spectra.shape)}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        controls = self.controls()
        freq, amp, decay = controls["mode_freq_hz"], controls["mode_amp"], controls["mode_decay_s"]
        position = (freq / hz_per_bin).clamp(0, target_spectrum.shape[0] - 1)
        lo = position.floor().long().clamp(max=target_spectrum.shape[0] - 2)
        w = position - lo
        at_mode = (1 - w) * target_spectrum[lo] + w * target_spectrum[lo + 1]       # linear interpolation
        audible = dsp.nyquist_gain(freq, self.sample_rate)
        usefulness, strength = at_mode * audible, amp * audible
        # a mode within two bins of a stronger one (ties: of a lower index) only doubles that one's
        # partial: idle too. [b, i, j]: is mode j near / ahead of mode i
        near = (freq.unsqueeze(-1) - freq.unsqueeze(-2)).abs() <= 2 * hz_per_bin
        s_i, s_j = strength.unsqueeze(-1), strength.unsqueeze(-2)
        ahead = (s_j > s_i) | ((s_j == s_i) & torch.ones_like(near[0]).tril(-1))
        usefulness = usefulness.masked_fill((near & ahead).any(-1), 0.0)
        residual = (target_spectrum - spectra).clamp(min=0)
        n_move = max(1, int(round(fraction * self.n_modes)))
        names = ("mode_freq_hz", "mode_decay_s", "mode_amp")
        masks = {k: torch.zeros_like(self.raw[k], dtype=torch.bool) for k in names}
        for b in range(self.batch_size):
            peaks_hz = dsp.spectral_peaks(residual[b], n_move).to(freq.dtype) * hz_per_bin
            if peaks_hz.numel() == 0:
                continue
            by_strength = strength[b].argsort(stable=True)           # ties in usefulness: weakest first
            idle = by_strength[usefulness[b][by_strength].argsort(stable=True)][:peaks_hz.numel()]
            new = {"mode_freq_hz": peaks_hz, "mode_decay_s": decay[b].median().expand(idle.numel()),
                   "mode_amp": amp[b].log().mean().exp().expand(idle.numel())}
            for k in names:
                self.raw[k][b, idle] = self.param_specs[k].from_physical(new[k]).to(self.raw[k].dtype)
                masks[k][b, idle] = True
        return masks

    def object_impulse(self, controls: Mapping[str, torch.Tensor], n_samples: int) -> torch.Tensor:
        """The modal (dry) object sound ``(batch, n_samples)``."""
        freq = controls["mode_freq_hz"]
        amp = controls["mode_amp"] * dsp.nyquist_gain(freq, self.sample_rate)
        return dsp.damped_mode_sum(freq, controls["mode_decay_s"], amp, n_samples, self.sample_rate,
                                   mode_chunk=self.mode_chunk)

    def _noise_spectrogram(self, n_samples: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """STFT of the seeded reverb noise; the last one is cached (it depends only on these arguments)."""
        key = (n_samples, dtype, str(device))
        if self._noise_cache is None or self._noise_cache[0] != key:
            noise = dsp.seeded_noise(self.seed, self.channels, n_samples, dtype, device)
            self._noise_cache = (key, dsp.noise_spectrogram(noise, self.sample_rate))
        return self._noise_cache[1]

    def reverb_impulse(self, controls: Mapping[str, torch.Tensor], n_samples: int) -> torch.Tensor:
        """The noise-band reverb impulse response ``(batch, channels, n_samples)`` (no dry path)."""
        amp = controls["band_amp"]
        centre = controls["band_center_hz"]
        amp = amp * dsp.nyquist_gain(centre, self.sample_rate)
        return dsp.noise_band_impulse(self._noise_spectrogram(n_samples, amp.dtype, amp.device), centre, controls["band_width_oct"], controls["band_decay_s"], amp,
                                      n_samples, self.sample_rate)

    def render(self, controls: Mapping[str, torch.Tensor], n_samples: int) -> torch.Tensor:
        """Render ``(batch, channels, n_samples)`` in the dtype of the controls."""
        n_samples = int(n_samples)
        if n_samples < 1:
            raise SDSAudioError(f"n_samples must be >= 1, got {n_samples}")
        # the reverb noise's STFT needs more than half a window: render a very short sound longer, then cut
        n_render = max(n_samples, dsp.noise_stft_settings(self.sample_rate)[0] // 2 + 1)
        obj = self.object_impulse(controls, n_render)[:, None, :]                       # (B, 1, T)
        wet = dsp.convolve_truncated(obj, self.reverb_impulse(controls, n_render))       # (B, C, T)
        return dsp.flush_tiny(controls["dry_gain"][:, None, None] * obj + wet)[..., :n_samples]

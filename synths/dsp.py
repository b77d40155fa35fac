"""Pure tensor DSP for the renderers: oscillators, envelopes, damped modes, noise bands.

Every function here is stateless and differentiable (PyTorch autograd), works in
float32 and float64 (the dtype of the inputs), and carries its shapes and units in
its docstring. The synth modules in this package own the parameters and call these.

Conventions:

* Time is sample-indexed: sample ``n`` sits at ``t = n / sample_rate`` seconds.
* Decays are T60 times: a ``*_decay_s`` of ``d`` means the quantity falls by a
  factor 1000 (60 dB) over ``d`` seconds, i.e. ``exp(-ln(1000) * t / d)``.
* Envelopes and the pitch sweep are evaluated on a *control grid* (one point every
  ``hop`` samples, ``hop = control_hop(sample_rate)``, about 2.76 kHz) and linearly
  interpolated to audio rate; the phase of a swept oscillator is the exact integral
  of that piecewise-linear frequency curve. This keeps the per-sample work of the
  FM renderer to a few tensor passes.
* Phases are accumulated in float64 and wrapped (``frac``) before any ``sin`` so a
  long note at a high frequency keeps its accuracy in float32.
"""

from __future__ import annotations

import math

import torch
import torchaudio

LN_1000 = math.log(1000.0)
TWO_PI = 2.0 * math.pi

#: Control-grid rate in Hz (envelopes, pitch sweep); ``hop = round(sample_rate / CONTROL_RATE_HZ)``.
CONTROL_RATE_HZ = 2756.25


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def control_hop(sample_rate: int) -> int:
    """Samples between control points (16 at 44.1 kHz, 8 at 22.05 kHz)."""
    return max(1, int(round(sample_rate / CONTROL_RATE_HZ)))


def next_fast_fft_size(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n`` (FFT lengths pocketfft / cuFFT handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def decay_rate(decay_s: torch.Tensor) -> torch.Tensor:
    """T60 time (s) -> exponential rate (1/s): ``ln(1000) / decay_s``."""
    return LN_1000 / decay_s


def nyquist_gain(freq_hz: torch.Tensor, sample_rate: int, cutoff: float = 0.48,
                 width: float = 0.005) -> torch.Tensor:
    """Smooth anti-alias gain: ~1 below ``cutoff * sr``, 0.5 at it, ~0 above.

    ``sigmoid((cutoff * sr - f) / (width * sr))``: 0.98 at 0.46 sr, 0.018 at the
    Nyquist frequency, 3e-4 at 0.52 sr. Shape and dtype follow ``freq_hz``.
    """
    return torch.sigmoid((cutoff * sample_rate - freq_hz) / (width * sample_rate))


def constant_power_pan(position: torch.Tensor) -> torch.Tensor:
    """Pan position in [-1, 1] -> ``(..., 2)`` left/right gains.

    Sine/cosine (constant-power) law scaled by sqrt(2) so a centred source keeps
    unit gain in each channel (a hard-panned one gets sqrt(2) on its side).
    """
    theta = (position + 1.0) * (math.pi / 4.0)
    return math.sqrt(2.0) * torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)


def flush_tiny(audio: torch.Tensor, floor: float = 1e-20) -> torch.Tensor:
    """Set values with ``|x| < floor`` (-400 dB) to exactly 0, passing gradients straight through.

    Exponential decays and the anti-alias gain pass through subnormal floats
    (< 1.2e-38 in float32) on their way to 0. Subnormals are slow on CPUs and, in
    an STFT, give complex bins whose ``abs()`` backward in PyTorch is NaN, which
    would poison the gradients of a spectral loss; exact zeros are harmless. The
    flush is ``x - stopgrad(x * [|x| < floor])``: the values become exactly 0 and
    the gradient is the identity, so (near-)silence is not a dead end.
    """
    tiny = (audio.detach().abs() < floor).to(audio.dtype)
    return audio - (audio * tiny).detach()


def fit_length(audio: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Crop or zero-pad the last axis to ``n_samples``."""
    have = audio.shape[-1]
    if have >= n_samples:
        return audio[..., :n_samples]
    return torch.nn.functional.pad(audio, (0, n_samples - have))


# ---------------------------------------------------------------------------------------
# control grid: envelopes and pitch sweep
# ---------------------------------------------------------------------------------------
def control_grid(n_samples: int, hop: int, sample_rate: int, dtype: torch.dtype,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, int]:
    """Times (s) of the control points covering ``n_samples`` samples.

    Returns ``(t_s, n_blocks)`` with ``t_s`` of shape ``(n_blocks + 1,)``: point ``b``
    sits at sample ``b * hop``; block ``b`` spans samples ``[b*hop, (b+1)*hop)``.
    """
    n_blocks = max(1, -(-n_samples // hop))
    t_s = torch.arange(n_blocks + 1, dtype=dtype, device=device) * (hop / sample_rate)
    return t_s, n_blocks


def interpolate_control(values: torch.Tensor, hop: int) -> torch.Tensor:
    """Linear interpolation of control points to audio rate.

    Args:
        values: ``(..., n_blocks + 1)`` values at the control points.
        hop: samples per block.

    Returns:
        ``(..., n_blocks * hop)``: sample ``b*hop + j`` is
        ``lerp(values[b], values[b+1], j / hop)`` (exact at the control points).
    """
    if hop == 1:
        return values[..., :-1]
    w = torch.arange(hop, dtype=values.dtype, device=values.device) / hop
    out = torch.lerp(values[..., :-1, None], values[..., 1:, None], w)
    return out.flatten(-2)


def attack_decay_envelope(t_s: torch.Tensor, attack_s: torch.Tensor, decay_s: torch.Tensor,
                          sustain: torch.Tensor) -> torch.Tensor:
    """Attack / decay / sustain envelope (no note-off, so it does not depend on duration).

    ``env(t) = min(t / attack_s, 1) * (sustain + (1 - sustain) * exp(-ln(1000) * max(t - attack_s, 0) / decay_s))``:
    a linear rise to 1 over ``attack_s``, then an exponential fall toward
    ``sustain`` that covers 60 dB of the distance in ``decay_s`` (T60).

    Args:
        t_s: ``(n,)`` times in seconds.
        attack_s, decay_s, sustain: ``(...)`` per-envelope values (broadcast against each other).

    Returns:
        ``(..., n)`` in [0, 1].
    """
    a = attack_s[..., None]
    rise = torch.clamp(t_s / a, max=1.0)
    fall = torch.exp(-decay_rate(decay_s)[..., None] * torch.relu(t_s - a))
    s = sustain[..., None]
    return rise * (s + (1.0 - s) * fall)


def pitch_multiplier(t_s: torch.Tensor, semitones: torch.Tensor, decay_s: torch.Tensor) -> torch.Tensor:
    """Frequency multiplier of a pitch sweep that starts ``semitones`` up and falls to 0.

    ``2 ** (semitones * exp(-ln(1000) t / decay_s) / 12)``: the offset in semitones
    falls by 60 dB (a factor 1000) in ``decay_s``. Shapes: ``t_s (n,)``,
    ``semitones, decay_s (...)`` -> ``(..., n)``.
    """
    offset = semitones[..., None] * torch.exp(-decay_rate(decay_s)[..., None] * t_s)
    return torch.exp2(offset / 12.0)


def warped_block_start(multiplier: torch.Tensor, hop: int, sample_rate: int) -> torch.Tensor:
    """Warped time at each block start, in float64.

    The frequency multiplier ``p`` is given at the control points and is linear in
    between. The warped time ``C(n) = sum_{m<n} p_m / sr`` (seconds of unit-rate
    phase; ``C(n) = n / sr`` when ``p = 1``) is split as
    ``C(b*hop + j) = start[b] + within[b, j]``; this returns ``start`` (the cumulative
    sum over blocks of the exact per-block sums of the interpolated ``p``), see
    :func:`warped_block_offsets` for ``within``.

    Args:
        multiplier: ``(..., n_blocks + 1)`` values at the control points.

    Returns:
        ``(..., n_blocks)`` float64 seconds.
    """
    p0, p1 = multiplier[..., :-1], multiplier[..., 1:]
    block_sum = (p0 * ((hop + 1) / 2.0) + p1 * ((hop - 1) / 2.0)).double() / sample_rate
    return torch.cumsum(block_sum, dim=-1) - block_sum


def warped_block_offsets(multiplier: torch.Tensor, hop: int, sample_rate: int) -> torch.Tensor:
    """In-block part of the warped time (see :func:`warped_block_start`).

    ``within[b, j] = sum_{i<j} lerp(p_b, p_{b+1}, i / hop) / sr``, a closed-form
    quadratic in ``j``, in the dtype of ``multiplier``: it stays below
    ``hop * max(p) / sr``, so float32 keeps it accurate.

    Args:
        multiplier: ``(..., n_blocks + 1)`` values at the control points.

    Returns:
        ``(..., n_blocks, hop)``.
    """
    p0, p1 = multiplier[..., :-1, None], multiplier[..., 1:, None]
    j = torch.arange(hop, dtype=multiplier.dtype, device=multiplier.device)
    # sum_{i<j} (p0 + (p1 - p0) i / hop) = p0 j + (p1 - p0) j (j - 1) / (2 hop)
    quad = j * (j - 1) / (2 * hop)
    return (p0 * (j - quad) + p1 * quad) / sample_rate


def oscillator_phase(freq_hz: torch.Tensor, start: torch.Tensor, within: torch.Tensor) -> torch.Tensor:
    """Phase (radians) of an oscillator at ``freq_hz`` on a (warped) time base.

    ``2 pi * (frac(freq_hz * start) + freq_hz * within)``: the product that grows
    with time (``freq_hz * start``) is formed in float64 and wrapped before the cast
    to the working dtype; the in-block part stays small.

    Args:
        freq_hz: ``(B,)`` oscillator frequency (the result has its dtype).
        start: ``(B, n_blocks)`` or ``(n_blocks,)`` float64 block-start times
            (:func:`warped_block_start`, or ``b * hop / sr`` for a fixed frequency).
        within: ``(B, n_blocks, hop)`` or ``(hop,)`` in-block times
            (:func:`warped_block_offsets`, or ``j / sr``).

    Returns:
        ``(B, n_blocks * hop)`` phase in radians (wrapped once per block).
    """
    base = torch.frac(freq_hz.double()[:, None] * start).to(freq_hz.dtype)
    return torch.addcmul((TWO_PI * base)[..., None], within, (TWO_PI * freq_hz)[:, None, None]).flatten(-2)


# ---------------------------------------------------------------------------------------
# FM self-feedback: Kepler's equation
# ---------------------------------------------------------------------------------------
def kepler_solve(phase: torch.Tensor, feedback: torch.Tensor, n_iterations: int | None = None) -> torch.Tensor:
    """Solve ``psi = phase + feedback * sin(psi)`` elementwise (instantaneous FM self-feedback).

    An operator with self-feedback ``beta`` outputs ``sin(psi)`` where
    ``psi = phi + beta * sin(psi)``: the output feeds its own phase within the same
    sample (no one-sample delay, hence no loop over samples). This is Kepler's
    equation ``E = M + e sin E`` with mean anomaly ``M = phi`` and eccentricity
    ``e = beta``; for ``0 <= beta < 1`` the solution is unique and smooth in both.

    Solution, all vectorised:

    1. start from ``E0 = M + e sin M / sqrt(1 - 2 e cos M + e^2)`` (within 0.23 rad
       for ``e <= 0.95``);
    2. Halley iterations under ``no_grad``: 1 in float32, 3 in float64 (worst case
       ``e = 0.95`` leaves about 8e-3 resp. 1e-15 rad); none when ``max(e) < 1e-3``;
    3. ONE differentiable Newton step with the iterate and the denominator detached::

           psi = E + (phi - E + beta * sin E) / D,     D = 1 - beta cos E   (detached)

       Its value refines ``E`` once more (error ~ ``e / (2 (1 - e)) * err^2``: below
       6e-4 rad at ``e = 0.95`` in float32, below 1e-5 for ``e <= 0.9``, round-off in
       float64), and its derivatives are exactly the implicit-function-theorem ones
       at the solution, ``dpsi/dphi = 1 / (1 - beta cos psi)`` and
       ``dpsi/dbeta = sin psi / (1 - beta cos psi)``, with no gradient through the
       iterations (the backward pass costs one step, whatever the iteration count).

    Args:
        phase: ``(...)`` the phase ``phi`` in radians (not necessarily wrapped).
        feedback: ``(...)`` broadcastable, in ``[0, 1)`` (the renderers keep it <= 0.95).
        n_iterations: Halley iterations, overriding the defaults above.

    Returns:
        ``psi`` with the broadcast shape of the inputs.
    """
    with torch.no_grad():
        m = phase.detach()
        e = feedback.detach()
        if n_iterations is None:
            n_iterations = 3 if m.dtype == torch.float64 else 1
            if float(e.max()) < 1e-3:
                n_iterations = 1 if m.dtype == torch.float64 else 0
        # (in-place and fused ops throughout: this loop is most of the FM renderer's work)
        one = torch.ones((), dtype=m.dtype, device=m.device)
        radius = torch.addcmul(torch.addcmul(one, e, e), e, torch.cos(m), value=-2.0).rsqrt_()
        guess = torch.addcmul(m, torch.sin(m).mul_(e), radius)
        for _ in range(n_iterations):
            s = torch.sin(guess).mul_(e)                              # e sin E
            fp = torch.addcmul(one, e, torch.cos(guess), value=-1.0)  # f' = 1 - e cos E
            f = torch.sub(guess, m).sub_(s)                           # f = E - M - e sin E
            den = torch.mul(fp, fp).addcmul_(s, f, value=-0.5)       # f'^2 - f f''/2 (f'' = e sin E)
            guess.addcdiv_(f.mul_(fp), den, value=-1.0)               # Halley: E -= f f' / den
        sin_e = torch.sin(guess)
        denom = torch.addcmul(one, e, torch.cos(guess), value=-1.0)
    return guess + torch.addcmul(phase - guess, feedback, sin_e) / denom


# ---------------------------------------------------------------------------------------
# modal synthesis: sums of damped sinusoids
# ---------------------------------------------------------------------------------------
def _mode_block_sum(freq_hz: torch.Tensor, rate: torch.Tensor, amp: torch.Tensor, n_blocks: int,
                    block: int, sample_rate: int) -> torch.Tensor:
    """One chunk of modes; see :func:`damped_mode_sum`. Returns ``(B, n_blocks * block)``."""
    dtype = amp.dtype
    dev = amp.device
    n0 = torch.arange(n_blocks, dtype=torch.float64, device=dev) * block        # block starts
    j = torch.arange(block, dtype=torch.float64, device=dev)                     # in-block offsets
    f64 = freq_hz.double()
    # block-start factor a_m * exp(-rate n0/sr) * exp(i theta0), theta0 wrapped in float64
    theta0 = (TWO_PI * torch.frac(f64[:, None, :] * (n0[None, :, None] / sample_rate))).to(dtype)
    d0 = torch.exp(-rate[:, None, :] * (n0[None, :, None] / sample_rate).to(dtype)) * amp[:, None, :]
    left = torch.cat([d0 * torch.cos(theta0), d0 * torch.sin(theta0)], dim=-1)         # (B, nb, 2M)
    # in-block factor exp(-rate j/sr) * exp(i theta_j)
    thetaj = (TWO_PI * torch.frac(f64[:, :, None] * (j / sample_rate))).to(dtype)
    dj = torch.exp(-rate[:, :, None] * (j / sample_rate).to(dtype))
    right = torch.cat([dj * torch.sin(thetaj), dj * torch.cos(thetaj)], dim=-2)        # (B, 2M, J)
    # Im(sum_m A_m B_m) = sum_m Re(A) Im(B) + Im(A) Re(B)
    return torch.bmm(left, right).flatten(-2)


def damped_mode_sum(freq_hz: torch.Tensor, decay_s: torch.Tensor, amp: torch.Tensor, n_samples: int,
                    sample_rate: int, mode_chunk: int = 256, checkpoint: bool = True) -> torch.Tensor:
    """Sum of exponentially damped sinusoids (a modal impulse response).

    ``y(n) = sum_m amp_m * exp(-ln(1000) n / (sr * decay_m)) * sin(2 pi f_m n / sr)``

    Computed without a ``(B, M, T)`` tensor: write ``n = n0 + j`` with block start
    ``n0`` (a multiple of ``J ~ sqrt(T)``) and offset ``0 <= j < J``. Each mode is
    ``Im(z_m^n)`` with ``z_m = exp((-rate_m + i 2 pi f_m) / sr)`` and
    ``z^(n0 + j) = z^n0 * z^j``, so the whole sum is one complex matrix product
    ``(B, n_blocks, M) @ (B, M, J)`` (two real batched matmuls): O(M sqrt(T)) memory
    and transcendental functions, O(M T) multiply-adds in BLAS. Block-start phases
    ``frac(f n0 / sr)`` are formed (and differentiated) in float64 before the cast;
    these tensors are only ``(B, n_blocks, M)`` and ``(B, M, J)``.

    Modes are processed ``mode_chunk`` at a time; with ``checkpoint`` and autograd
    on, each chunk runs under :func:`torch.utils.checkpoint.checkpoint`, so the
    saved activations are one chunk's ``O(B * chunk * sqrt(T))`` and memory stays
    bounded for thousands of modes (the chunk is recomputed in the backward pass).

    Args:
        freq_hz, decay_s, amp: ``(B, M)`` mode frequency (Hz), T60 (s), amplitude.
        n_samples: output length.
        sample_rate: Hz.

    Returns:
        ``(B, n_samples)`` in the dtype of ``amp``.
    """
    block = max(1, int(math.ceil(math.sqrt(n_samples))))
    n_blocks = -(-n_samples // block)
    rate = decay_rate(decay_s)
    n_modes = freq_hz.shape[-1]
    out = None
    for lo in range(0, n_modes, mode_chunk):
        args = (freq_hz[:, lo:lo + mode_chunk], rate[:, lo:lo + mode_chunk], amp[:, lo:lo + mode_chunk])
        if checkpoint and n_modes > mode_chunk and torch.is_grad_enabled():
            part = torch.utils.checkpoint.checkpoint(_mode_block_sum, *args, n_blocks, block, sample_rate,
                                                     use_reentrant=False)
        else:
            part = _mode_block_sum(*args, n_blocks, block, sample_rate)
        out = part if out is None else out + part
    return out[:, :n_samples]


# ---------------------------------------------------------------------------------------
# spectral analysis (sound matching's re-seeding)
# ---------------------------------------------------------------------------------------
def spectral_peaks(spectrum: torch.Tensor, k: int) -> torch.Tensor:
    """Fractional bin positions of the ``k`` largest local maxima of a 1-D magnitude spectrum.

    A bin is a peak when it is positive, above its lower neighbour and not below its
    upper one; its position is refined by a parabola through the log magnitudes of
    the three bins (within half a bin). Returns a float tensor of at most ``k``
    positions, largest peak first (empty when there is no peak).
    """
    if spectrum.dim() != 1:
        raise ValueError(f"spectrum must be 1-D, got shape {tuple(spectrum.shape)}")
    if spectrum.numel() < 3 or k < 1:
        return spectrum.new_zeros(0)
    mid = spectrum[1:-1]
    bins = torch.nonzero((mid > spectrum[:-2]) & (mid >= spectrum[2:]) & (mid > 0)).flatten() + 1
    bins = bins[spectrum[bins].argsort(descending=True)[:k]]
    log_mag = torch.log(spectrum.clamp(min=torch.finfo(spectrum.dtype).tiny))
    a, b, c = log_mag[bins - 1], log_mag[bins], log_mag[bins + 1]
    curvature = (a - 2 * b + c).clamp(max=-1e-12)
    return bins.to(spectrum.dtype) + (0.5 * (a - c) / curvature).clamp(-0.5, 0.5)


# ---------------------------------------------------------------------------------------
# noise bands (reverb tail)
# ---------------------------------------------------------------------------------------
def seeded_noise(seed: int, channels: int, n_samples: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Unit-variance white noise ``(channels, n_samples)``, bit-identical for a given seed.

    Each channel has its own ``torch.Generator`` (seeded ``seed * 7919 + channel``),
    so channels are independent and drawn in float32 on the CPU before the cast.
    """
    rows = []
    for c in range(channels):
        g = torch.Generator(device="cpu").manual_seed(int(seed) * 7919 + c)
        rows.append(torch.randn(n_samples, generator=g, dtype=torch.float32))
    return torch.stack(rows).to(device=device, dtype=dtype)


def noise_stft_settings(sample_rate: int) -> tuple[int, int]:
    """``(n_fft, hop)`` used for noise-band synthesis: ~23 ms Hann windows, 4x overlap."""
    n_fft = 1 << max(5, int(round(math.log2(0.0232 * sample_rate))))
    return n_fft, n_fft // 4


def noise_spectrogram(noise: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """STFT of the reverb noise, ``(C, T) -> (C, F, frames)`` complex (settings of :func:`noise_stft_settings`)."""
    n_fft, hop = noise_stft_settings(sample_rate)
    window = torch.hann_window(n_fft, dtype=noise.dtype, device=noise.device)
    return torch.stft(noise, n_fft, hop, window=window, center=True, return_complex=True)


def gaussian_band_response(freqs_hz: torch.Tensor, center_hz: torch.Tensor, width_oct: torch.Tensor) -> torch.Tensor:
    """Band-pass magnitude, Gaussian in log-frequency: 1 at the centre, 0.5 at +-width/2 octaves.

    ``2 ** -((2 * log2(f / center) / width) ** 2)``. Shapes: ``freqs_hz (F,)`` (all > 0),
    ``center_hz, width_oct (...)`` -> ``(..., F)``.
    """
    dist = (torch.log2(freqs_hz) - torch.log2(center_hz)[..., None]) * (2.0 / width_oct[..., None])
    return torch.exp2(-dist * dist)


def noise_band_impulse(noise_spec: torch.Tensor, center_hz: torch.Tensor, width_oct: torch.Tensor,
                       decay_s: torch.Tensor, amp: torch.Tensor, n_samples: int, sample_rate: int) -> torch.Tensor:
    """Sum of decaying band-passed noise bands: a stochastic reverb impulse response.

    Band ``b`` is white noise band-passed by :func:`gaussian_band_response`
    (applied to the noise's STFT, so centre and width get gradients), shaped by
    ``exp(-ln(1000) t / decay_b)`` and scaled so that at ``amp_b = 1`` its impulse
    response has unit energy: unit variance at t = 0 (the response is divided by
    its RMS over frequency) times ``sqrt(1 - exp(-2 rate_b / sr))``, which does not
    depend on ``n_samples``. All bands are summed in the time-frequency domain
    (one ``(F, bands) @ (bands, frames)`` product) and resynthesised with one
    inverse STFT per channel (``torch.istft``) instead of one inverse FFT per band;
    the decay is therefore sampled at the STFT frame rate (hop ~5.8 ms).

    Args:
        noise_spec: ``(C, F, frames)`` complex STFT of white noise (:func:`noise_spectrogram`),
            shared by the batch.
        center_hz, width_oct, decay_s, amp: ``(B, n_bands)``.
        n_samples: output length (the length of the noise).
        sample_rate: Hz.

    Returns:
        ``(B, C, n_samples)`` in the dtype of ``amp``.
    """
    n_fft, hop = noise_stft_settings(sample_rate)
    dtype, device = amp.dtype, amp.device
    n_freq, n_frames = noise_spec.shape[-2:]
    freqs = torch.arange(n_freq, dtype=dtype, device=device) * (sample_rate / n_fft)
    freqs[0] = 0.5 * sample_rate / n_fft                      # keep log2 finite at DC
    response = gaussian_band_response(freqs, center_hz, width_oct)                      # (B, nb, F)
    unit_rms = torch.rsqrt(response.square().mean(dim=-1) + 1e-12)                      # (B, nb)
    rate = decay_rate(decay_s)
    unit_energy = torch.sqrt(-torch.expm1(-2.0 * rate / sample_rate))
    gain = amp * unit_rms * unit_energy
    t_frames = torch.arange(n_frames, dtype=dtype, device=device) * (hop / sample_rate)
    decay = torch.exp(-rate[..., None] * t_frames)                                       # (B, nb, frames)
    shape = torch.bmm((response * gain[..., None]).transpose(1, 2), decay)             # (B, F, frames)
    # real x complex product on the (re, im) view: avoids promoting the gains to complex
    shaped = shape[:, None, :, :, None] * torch.view_as_real(noise_spec)[None]          # (B, C, F, frames, 2)
    batch, channels = shaped.shape[:2]
    window = torch.hann_window(n_fft, dtype=dtype, device=device)
    out = torch.istft(torch.view_as_complex(shaped.flatten(0, 1)), n_fft, hop, window=window, center=True,
                      length=n_samples)
    return out.view(batch, channels, n_samples)


def convolve_truncated(signal: torch.Tensor, impulse: torch.Tensor) -> torch.Tensor:
    """First ``T`` samples of the linear convolution of two ``(..., T)`` signals.

    Uses ``torchaudio.functional.fftconvolve``; ``signal`` is zero-padded first so
    the FFT length is a 2-3-5-smooth number (``2T - 1`` is often a product of large
    primes, which is several times slower). Leading dimensions broadcast.
    """
    n = signal.shape[-1]
    m = impulse.shape[-1]
    fast = next_fast_fft_size(n + m - 1)
    padded = torch.nn.functional.pad(signal, (0, fast - (n + m - 1)))
    return torchaudio.functional.fftconvolve(padded, impulse)[..., :n]

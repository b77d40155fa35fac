"""EmbeddedPrior: the codec + flow-matching DiT + MiniLM prior shipped with the package.

Audio is 22050 Hz mono. The prior's latents are the codec's latents
normalised per channel by the flow model's statistics
(:meth:`FlowModel.normalize`), so Gaussian noise has the right scale.

Noise level map. The flow model's time ``s`` runs from 0 (noise) to 1 (data)
along ``x_s = (1 - s) * noise + s * x0`` and predicts ``v = dx/ds = x0 - noise``.
The library's ``t`` (0 clean, 1 noise) is ``t = 1 - s``, so

- ``add_noise``: ``x_t = t * noise + (1 - t) * x0``; ``sigma(t) = t``;
- ``denoise(x_t, t, steps=1)``: one Euler step to ``s = 1``:
  ``x0_hat = x_t + t * v`` (equivalently ``x_t - t * v_t`` with the velocity
  in ``t``, ``v_t = dx/dt = -v``);
- ``denoise(..., steps=k)``: ``k`` Euler (or midpoint) steps from ``s = 1 - t``
  to 1 on a uniform (or sway-warped) grid, classifier-free guidance batched;
- ``noise_from_x0``: ``eps_hat = (x_t - (1 - t) * x0_hat) / t``.

Duration: ``condition(..., seconds)`` is the duration of the sound; at
``denoise`` time the model is told ``min(seconds, length of the latents)``, so
``seconds=None`` (the default) means "the sound fills the window".
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import SDSAudioError
from ..flow.condition import FlowCondition
from ..flow.dit import FlowModel
from ..flow.guidance import guided_velocity
from ..flow.samplers import integrate, time_grid
from .base import Conditioning, Prior
from .prompt_reading import PromptReading

CODEC_FILE = "codec.safetensors"
FLOW_FILE = "flow.safetensors"
CODEC_HINT = "train it with `sds-audio train codec --corpus CORPUS_DIR --out OUT_DIR`"
FLOW_HINT = ("train it with `sds-audio train flow --corpus CORPUS_DIR --out OUT_DIR --codec CODEC.safetensors`")


def default_assets_dir() -> Path:
    """``sds_audio/assets`` inside the installed package."""
    return Path(__file__).resolve().parent.parent / "assets"


#: ``EmbeddedPrior(anchor=...)`` choices: what the pooled text input is when the flow file carries an anchor.
ANCHOR_MODES = ("centroid", "caption", "off")


def anchor_concept_names(n_concepts: int) -> list[str]:
    """The names behind a prompt anchor's concept indices.

    :func:`~sds_audio.flow.anchor.fit_anchor` numbers the concepts of its training captions in sorted
    order; the shipped prior was fitted on every corpus concept, so index ``k`` is the ``k``-th name of
    the sorted catalogue. An anchor of another size (a prior trained on a subset) gets ``concept k``.
    """
    from ..corpus.concepts import CONCEPTS

    names = sorted(c.name for c in CONCEPTS)
    return names if len(names) == n_concepts else [f"concept {k}" for k in range(n_concepts)]


class EmbeddedPrior(Prior):
    """Prior over a :class:`~sds_audio.codec.Codec`, a :class:`~sds_audio.flow.FlowModel` and MiniLM.

    Args:
        codec: the frozen codec (``encode``, ``decode``, ``sample_rate``, ``channels``,
            ``latent_channels``, ``hop_length``).
        flow: the frozen flow model trained on that codec's latents.
        text_encoder: a :class:`sds_audio.text.TextEncoder` (default: a new one).
        device, dtype: where and in which precision everything runs
            (default: CPU, float32).
        sampler: ``"euler"`` or ``"midpoint"`` for :meth:`denoise` chains.
        sway_coef: sway-sampling coefficient for :meth:`denoise` chains
            (None: uniform steps).
        codec_precision: ``"float32"``, ``"bfloat16"`` (the codec's matrix products and
            convolutions run under bfloat16 autocast; weights and the latents stay
            float32) or ``"auto"``: bfloat16 on a CPU with AMX bfloat16 tiles, where it
            makes :meth:`encode` / :meth:`decode` about 1.7x / 2x faster, float32
            elsewhere. On held-out corpus clips bfloat16 moves the decoded audio by
            2.4 % (relative L2; log-spectral distance 0.033, against 0.75 between the
            codec's float32 reconstruction and the original), see
            ``benchmarks/codec_speed.py --precision float32 bfloat16 --corpus DIR``.
            Applies to a float32 prior only (a ``dtype=float16`` / ``bfloat16`` prior runs
            its codec in that dtype).
        anchor: what to do with the flow model's :class:`~sds_audio.flow.anchor.PromptAnchor`
            (ignored when the file carries none). ``"centroid"`` (default): the pooled
            input is the centroid of the concept the anchor reads off the prompt, and
            cross-attention sees the tokens of that concept's training caption nearest
            the prompt followed by the prompt's own. ``"caption"``: the same, with that
            caption's pooled embedding as the pooled input (follows loudness and reverb
            words more strongly, names the sound less reliably; see ``assets/flow.md``).
            ``"off"``: the prompt alone.
    """

    name = "embedded"

    def __init__(self, codec: torch.nn.Module, flow: FlowModel, text_encoder: Any = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 sampler: str = "euler", sway_coef: float | None = None, codec_precision: str = "auto",
                 anchor: str = "centroid"):
        if flow.config.latent_channels != codec.latent_channels:
            raise SDSAudioError(f"the flow model expects {flow.config.latent_channels} latent channels but the "
                                f"codec has {codec.latent_channels}: train the flow model on this codec")
        if int(flow.config.sample_rate) != int(codec.sample_rate) or \
                abs(flow.config.latent_rate - codec.sample_rate / codec.hop_length) > 1e-6:
            raise SDSAudioError("the flow model was trained on a codec with another sample rate or hop: "
                                "train the flow model on this codec")
        if anchor not in ANCHOR_MODES:
            raise SDSAudioError(f"anchor must be one of {', '.join(ANCHOR_MODES)}, got {anchor!r}")
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._dtype = dtype if dtype is not None else torch.float32
        self.codec = codec.to(self._device, self._dtype).eval().requires_grad_(False)
        self.flow = flow.to(self._device, self._dtype).eval().requires_grad_(False)
        if text_encoder is None:
            from ..text import TextEncoder

            text_encoder = TextEncoder(device=self._device)
        self.text_encoder = text_encoder
        self.sample_rate = int(codec.sample_rate)
        self.channels = int(codec.channels)
        self.latent_channels = int(codec.latent_channels)
        self.hop_length = int(codec.hop_length)
        self.latent_rate = self.sample_rate / self.hop_length
        self.max_duration_s = float(flow.config.max_duration_s)
        self.sampler = sampler
        self.sway_coef = sway_coef
        self.codec_autocast = _codec_autocast_dtype(codec_precision, self._device, self._dtype)
        self.anchor = flow.anchor if anchor != "off" else None
        self.anchor_mode = anchor if self.anchor is not None else "off"
        self._cache: dict[tuple[str, str | None], tuple[FlowCondition, FlowCondition | None]] = {}
        self._warned_long = False

    # ------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def latent_length(self, n_samples: int) -> int:
        """The codec pads audio to a multiple of its hop: ``ceil(n_samples / hop)`` frames."""
        return max(1, -(-int(n_samples) // self.hop_length))

    # ------------------------------------------------------------- autoencoder
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, 1, T)`` at 22050 Hz -> normalised latents ``(B, D, ceil(T / hop))``; differentiable
        (latent SDS needs the encoder's gradient; decoder-SDS calls it under ``no_grad``)."""
        if audio.dim() != 3 or audio.shape[1] != self.channels:
            raise SDSAudioError(f"the embedded prior expects audio of shape (batch, {self.channels}, samples), "
                                f"got {tuple(audio.shape)}")
        with self._codec_context():
            z = self.codec.encode(audio.to(self._device, self._dtype))
        return self.flow.normalize(z.to(self._dtype))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(B, D, L)`` -> audio ``(B, 1, L * hop)``; differentiable."""
        with self._codec_context():
            audio = self.codec.decode(self.flow.denormalize(latents.to(self._device, self._dtype)))
        return audio.to(self._dtype)

    def _codec_context(self) -> contextlib.AbstractContextManager:
        if self.codec_autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self._device.type, dtype=self.codec_autocast)

    # ------------------------------------------------------------ conditioning
    def _text_condition(self, prompt: str) -> FlowCondition:
        tokens, mask, pooled = self.text_encoder.encode([prompt])
        if self.anchor is not None:
            own = pooled.to(self._device)
            caption = self.anchor.captions[int(self.anchor.nearest(own)[0])]
            a_tokens, a_mask, a_pooled = self.text_encoder.encode([caption])
            pooled = self.anchor.concept_embedding(own) if self.anchor_mode == "centroid" else a_pooled
            tokens = torch.cat([a_tokens.to(tokens), tokens], 1)
            mask = torch.cat([a_mask.to(mask), mask], 1)
        return FlowCondition.from_text(tokens, mask, pooled, 0.0).to(self._device, self._dtype)

    def read_prompt(self, prompt: str, top_k: int = 3) -> PromptReading | None:
        """The concepts the prompt anchor reads off ``prompt`` (None without an anchor)."""
        if self.anchor is None:
            return None
        _, _, pooled = self.text_encoder.encode([prompt])
        own = torch.nn.functional.normalize(pooled.to(self._device).float(), dim=-1)
        probs = self.anchor.concept_probabilities(own)[0]
        similarity = float((own @ self.anchor.bank.float().T).max())
        names = anchor_concept_names(int(probs.numel()))
        top = torch.topk(probs, min(top_k, probs.numel()))
        concepts = tuple((names[int(i)], float(p)) for p, i in zip(top.values, top.indices))
        return PromptReading(prompt=prompt, concepts=concepts, confidence=concepts[0][1], similarity=similarity)

    def condition(self, prompt: str, negative: str | None = None, seconds: float | None = None) -> Conditioning:
        """Encode ``prompt`` (and ``negative``, which replaces the unconditional branch); cached per pair.

        Args:
            seconds: duration of the sound in seconds (None: it fills whatever
                latent window :meth:`denoise` gets).

        Raises:
            SDSAudioError: empty prompt, or ``seconds`` not positive.
        """
        if seconds is not None and not float(seconds) > 0:
            raise SDSAudioError(f"seconds must be positive, got {seconds}")
        if negative is not None and not negative.strip():
            negative = None
        key = (prompt, negative)
        if key not in self._cache:
            cond = self._text_condition(prompt)
            uncond = self._text_condition(negative) if negative is not None else None
            self._cache[key] = (cond, uncond)
        cond, uncond = self._cache[key]
        tensors = {"cond": cond, "uncond": uncond, "seconds": None if seconds is None else float(seconds)}
        return Conditioning(prompt=prompt, negative=negative,
                            seconds=float(seconds) if seconds is not None else self.max_duration_s,
                            tensors=tensors)

    def flow_conditions(self, cond: Conditioning, n_frames: int) -> tuple[FlowCondition, FlowCondition]:
        """The conditional and unconditional :class:`FlowCondition` for latents of ``n_frames`` frames."""
        window_s = n_frames / self.latent_rate
        if window_s > 1.1 * self.max_duration_s and not self._warned_long:
            warnings.warn(f"the embedded prior was trained on clips up to {self.max_duration_s:.1f} s; "
                          f"denoising {window_s:.1f} s of latents may degrade", stacklevel=3)
            self._warned_long = True
        requested = cond.tensors.get("seconds")
        seconds = window_s if requested is None else min(float(requested), window_s)
        c = cond.tensors["cond"].with_seconds(seconds)
        u = cond.tensors["uncond"]
        if u is None:
            u = FlowCondition.unconditional(1, seconds, c.tokens.shape[-1], self._device).to(dtype=self._dtype)
        else:
            u = u.with_seconds(seconds)
        return c, u

    # ------------------------------------------------------------------- noise
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The weight of the noise in ``x_t`` (``t`` itself; the signal weight is ``1 - t``)."""
        return t

    @staticmethod
    def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype).reshape(-1)
        return t.expand(x.shape[0]).reshape(-1, *([1] * (x.dim() - 1)))

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = t * noise + (1 - t) * x0``."""
        tb = self._bcast(t, latents)
        return tb * noise + (1.0 - tb) * latents

    def noise_from_x0(self, noisy: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``eps_hat = (x_t - (1 - t) * x0_hat) / t`` (``t`` clamped away from 0)."""
        tb = self._bcast(t, noisy).clamp_min(1e-4)
        return (noisy - (1.0 - tb) * x0_hat) / tb

    @torch.no_grad()
    def velocity(self, noisy: torch.Tensor, t: torch.Tensor, cond: Conditioning, guidance_scale: float = 4.0
                 ) -> torch.Tensor:
        """Guided flow velocity ``v = dx/ds`` (``s = 1 - t``) at ``noisy``; one batched forward."""
        c, u = self.flow_conditions(cond, noisy.shape[-1])
        s = 1.0 - self._bcast(t, noisy).reshape(-1)
        return guided_velocity(self.flow, c, u, float(guidance_scale))(noisy.to(self._device, self._dtype), s)

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, cond: Conditioning, guidance_scale: float = 4.0,
                steps: int = 1) -> torch.Tensor:
        """Deterministic ``steps``-step ODE chain from ``t`` (``(B,)``) to 0 with CFG; returns ``x0_hat``.

        With ``steps=1`` and the Euler sampler this is ``x0_hat = x_t + t * v``.
        """
        x = noisy.to(self._device, self._dtype)
        c, u = self.flow_conditions(cond, x.shape[-1])
        s0 = 1.0 - self._bcast(t, x).reshape(-1).float()
        grid = time_grid(int(steps), s0, 1.0, self.sway_coef)
        velocity = guided_velocity(self.flow, c, u, float(guidance_scale))
        return integrate(velocity, x, grid, self.sampler)


CODEC_PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_amx_bf16() -> bool:
    """True when this CPU multiplies bfloat16 matrices in AMX tiles (oneDNN uses them under autocast)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # private torch helpers: absent means "don't know"
        return False


def _codec_autocast_dtype(precision: str, device: torch.device, dtype: torch.dtype) -> torch.dtype | None:
    """The autocast dtype for the codec's forward passes (None: run in ``dtype`` as is)."""
    if precision not in CODEC_PRECISIONS:
        raise SDSAudioError(f"codec_precision must be one of {', '.join(CODEC_PRECISIONS)}, got {precision!r}")
    if dtype != torch.float32 or precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_amx_bf16() else None


def _load_codec_file(path: Path) -> torch.nn.Module:
    if not path.is_file():
        raise SDSAudioError(f"the embedded prior's codec weights {path} do not exist: reinstall sds-audio or "
                            f"{CODEC_HINT}", exit_code=1)
    from ..codec import load_codec

    try:
        return load_codec(path)
    except SDSAudioError as exc:
        message = str(exc)
        if "sds-audio train" not in message:
            message = f"{message} ({path}); {CODEC_HINT}"
        raise SDSAudioError(message, exit_code=1) from exc


def check_flow_codec(flow_path: str | os.PathLike, codec: torch.nn.Module, codec_name: str | os.PathLike) -> None:
    """Raise :class:`SDSAudioError` when the flow file at ``flow_path`` was trained on another latent space.

    Compares the flow's ``codec_latent_sha256`` metadata with
    :func:`~sds_audio.flow.latents.latent_space_fingerprint` of ``codec`` (the
    encoder side only, so a fine-tuned decoder still fits).
    """
    from ..flow.latents import latent_space_fingerprint
    from ..flow.weights import flow_metadata

    expected = flow_metadata(flow_path).get("codec_latent_sha256")
    if expected is not None and expected != latent_space_fingerprint(codec):
        raise SDSAudioError(f"{flow_path} was trained on another codec than {codec_name}: use the codec it was "
                            f"trained with, or {FLOW_HINT}", exit_code=1)


def load_embedded_prior(device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                        assets_dir: str | os.PathLike | None = None, text_encoder: Any = None,
                        **kwargs: Any) -> EmbeddedPrior:
    """The embedded prior from ``assets_dir/codec.safetensors`` and ``assets_dir/flow.safetensors``.

    ``assets_dir`` defaults to ``sds_audio/assets`` inside the package.

    Args:
        device, dtype: default CPU, float32 (the shipped float16 weights are upcast).
        assets_dir: a directory holding both files.
        text_encoder: a :class:`~sds_audio.text.TextEncoder` to share.
        **kwargs: ``sampler`` / ``sway_coef`` / ``anchor`` / ``codec_precision`` for :class:`EmbeddedPrior`.

    Raises:
        SDSAudioError: a file is missing, broken, or the flow model was trained on
            another codec; the message names the file and the command that trains it.
    """
    from ..flow.weights import load_flow

    folder = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    codec = _load_codec_file(folder / CODEC_FILE)
    flow_path = folder / FLOW_FILE
    if not flow_path.is_file():
        raise SDSAudioError(f"the embedded prior's flow weights {flow_path} do not exist: reinstall sds-audio or "
                            f"{FLOW_HINT}", exit_code=1)
    flow = load_flow(flow_path)
    check_flow_codec(flow_path, codec, folder / CODEC_FILE)
    return EmbeddedPrior(codec, flow, text_encoder=text_encoder, device=device, dtype=dtype, **kwargs)

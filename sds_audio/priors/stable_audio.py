"""Stable Audio Open as a :class:`~sds_audio.priors.base.Prior`, on diffusers' components.

The prior holds the five models of ``diffusers.StableAudioPipeline`` and the
scheduler's *config* (never a pipeline ``__call__`` or a scheduler ``step()``):

* ``AutoencoderOobleck`` (``vae``): audio ``(B, 2, T)`` at 44.1 kHz <-> latents
  ``(B, 64, ceil(T / 2048))``. Encoding uses the posterior mean; audio is
  zero-padded to a whole number of latent frames and decoded audio keeps the
  padded length (callers crop).
* ``T5EncoderModel`` + tokenizer: prompt -> token states, padded to the
  tokenizer's ``model_max_length`` (the layout the model was trained with).
  Longer prompts are truncated with a warning. T5 runs in float32 whatever the
  prior's dtype (it runs once per prompt; T5 is known to overflow in fp16).
* ``StableAudioProjectionModel``: projects the token states and embeds
  ``seconds_start = 0`` and ``seconds_total`` (the clip duration).
* ``StableAudioDiTModel`` (``transformer``): the v-prediction network.

Conditioning follows the pipeline's layout: cross-attention tokens are
``[projected text (masked), seconds_start, seconds_total]`` and the global
embedding is ``[seconds_start, seconds_total]`` concatenated on features. The
unconditional branch is all-zero cross-attention tokens with the same global
embedding, or, with a negative prompt, the negative prompt's tokens. Guidance
runs both branches in one batched forward (``cfg_batched=True``, the default)
or one after the other (less memory); both give the same numbers.

Noise: EDM preconditioning and the ``t -> sigma`` map of
:class:`~sds_audio.priors.edm.EDMParameterization`, read from the scheduler
config; ``denoise`` runs :func:`~sds_audio.priors.edm.dpm_solver_chain`.

Window: like the pipeline, ``denoise`` runs the DiT on the transformer's full
``sample_size`` window by default (the clip's latents followed by noisy silence,
cropped after; :mod:`sds_audio.priors.window`); ``window="clip"`` runs it on the
clip's frames only, which is faster and a sequence length the model never saw.

Example::

    prior = StableAudioOpenPrior.from_pretrained("/models/stable-audio-open-1.0", device="cuda",
                                                 dtype=torch.bfloat16)
    cond = prior.condition("kick drum, bass, reverb", seconds=2.0)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..errors import SDSAudioError
from .base import Conditioning, Prior, check_noise_levels
from .edm import EDMParameterization, dpm_solver_chain
from .window import LatentWindow

DEFAULT_HUB_ID = "stabilityai/stable-audio-open-1.0"
_SUBFOLDERS = ("vae", "transformer", "text_encoder", "tokenizer", "projection_model", "scheduler")
_CACHE_SIZE = 64


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def _place(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Move to ``device``; cast only when the dtype differs (diffusers logs on every dtype cast)."""
    module.to(device=device)
    if any(p.dtype != dtype for p in module.parameters()):
        module.to(dtype=dtype)
    return module


class StableAudioOpenPrior(Prior):
    """Stable Audio Open (diffusers layout) seen through the Prior protocol.

    Args:
        vae: ``AutoencoderOobleck``.
        transformer: ``StableAudioDiTModel``.
        text_encoder: ``T5EncoderModel``.
        tokenizer: a T5 tokenizer (any ``PreTrainedTokenizer[Fast]`` with padding).
        projection_model: ``StableAudioProjectionModel``.
        scheduler_config: the scheduler's config dict (``scheduler_config.json``).
        device: where the models run (default: CUDA when available, else CPU).
        dtype: dtype of the VAE, DiT and projection (float32, float16 or bfloat16;
            default float32). Inputs and outputs of every method are float32.
        cpu_offload: keep models on the CPU and move each to ``device`` only
            while it runs (saves GPU memory, costs transfers every call).
        cfg_batched: run the conditional and unconditional branches as one
            batched forward (faster) or one after the other (less memory).
        window: ``"full"`` (default): denoise the transformer's whole ``sample_size``
            window as the pipeline does; ``"clip"``: only the clip's frames (faster).
        name: provenance string.
    """

    def __init__(self, vae: nn.Module, transformer: nn.Module, text_encoder: nn.Module, tokenizer: Any,
                 projection_model: nn.Module, scheduler_config: Mapping[str, Any], *,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 cpu_offload: bool = False, cfg_batched: bool = True, window: str = "full",
                 name: str = "stable-audio-open"):
        device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or torch.float32
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise SDSAudioError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        if device.type == "cpu" and dtype == torch.float16:
            raise SDSAudioError("float16 is not supported on the CPU; use float32 or bfloat16")
        self._device = device
        self._dtype = dtype
        self.cpu_offload = bool(cpu_offload) and device.type != "cpu"
        self.cfg_batched = bool(cfg_batched)
        self.name = name
        home = torch.device("cpu") if self.cpu_offload else device
        self.vae = _place(_freeze(vae), home, dtype)
        self.transformer = _place(_freeze(transformer), home, dtype)
        self.projection_model = _place(_freeze(projection_model), home, dtype)
        self.text_encoder = _place(_freeze(text_encoder), home, torch.float32)
        self.tokenizer = tokenizer
        self.edm = EDMParameterization.from_scheduler_config(scheduler_config)

        vae_cfg = self.vae.config
        self.hop_length = int(math.prod(vae_cfg.downsampling_ratios))
        self.sample_rate = int(vae_cfg.sampling_rate)
        self.channels = int(vae_cfg.audio_channels)
        self.latent_channels = int(vae_cfg.decoder_input_channels)
        self.latent_rate = self.sample_rate / self.hop_length
        self.max_duration_s = float(self.transformer.config.sample_size * self.hop_length / self.sample_rate)
        self.window = LatentWindow(window, int(self.transformer.config.sample_size), self.hop_length)
        self.seconds_range = (float(self.projection_model.config.min_value),
                              float(self.projection_model.config.max_value))
        max_len = int(getattr(tokenizer, "model_max_length", 128) or 128)
        self.max_prompt_tokens = max_len if max_len <= 4096 else 128
        self._text_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._cond_cache: OrderedDict[tuple, Conditioning] = OrderedDict()
        self._rotary_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = DEFAULT_HUB_ID, *, device=None, dtype=None,
                        allow_download: bool = False, token: str | None = None, cpu_offload: bool = False,
                        cfg_batched: bool = True, window: str = "full") -> "StableAudioOpenPrior":
        """Load the components from a local directory in diffusers layout or a Hugging Face hub id.

        Args:
            name_or_path: a directory with ``vae/``, ``transformer/``, ``text_encoder/``,
                ``tokenizer/``, ``projection_model/``, ``scheduler/`` subfolders, or a
                hub id such as ``"stabilityai/stable-audio-open-1.0"``.
            allow_download: fetch missing files from the hub (otherwise only the
                local cache is read and nothing touches the network).
            token: Hugging Face token for gated repositories (default: the one
                ``huggingface-cli login`` stored).
            window: ``"full"`` or ``"clip"`` (see the class).

        Raises:
            SDSAudioError: missing files, gated access without a token, or no network,
                with what to do.
        """
        from diffusers import AutoencoderOobleck, StableAudioDiTModel
        from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
        from transformers import AutoTokenizer, T5EncoderModel

        source = str(name_or_path)
        local = Path(source).expanduser()
        is_dir = local.is_dir()
        if is_dir:
            source = str(local)
            missing = [s for s in _SUBFOLDERS if not (local / s).is_dir()]
            if missing:
                raise SDSAudioError(
                    f"{local} is not a Stable Audio Open directory in diffusers layout: missing "
                    f"{', '.join(s + '/' for s in missing)}. Download it with "
                    f"`huggingface-cli download {DEFAULT_HUB_ID} --local-dir DIR` (after accepting the licence).")
        elif not _looks_like_hub_id(source):
            raise SDSAudioError(f"{source} does not exist; pass a directory in diffusers layout or a hub id "
                                f"such as {DEFAULT_HUB_ID!r}")
        load_kw: dict[str, Any] = {"local_files_only": is_dir or not allow_download}
        if token is not None:
            load_kw["token"] = token
        torch_dtype = dtype or torch.float32
        try:
            scheduler_config = _load_scheduler_config(source, is_dir, load_kw)
            vae = AutoencoderOobleck.from_pretrained(source, subfolder="vae", torch_dtype=torch_dtype, **load_kw)
            transformer = StableAudioDiTModel.from_pretrained(source, subfolder="transformer",
                                                              torch_dtype=torch_dtype, **load_kw)
            projection = StableAudioProjectionModel.from_pretrained(source, subfolder="projection_model",
                                                                    torch_dtype=torch_dtype, **load_kw)
            text_encoder = T5EncoderModel.from_pretrained(source, subfolder="text_encoder",
                                                          torch_dtype=torch.float32, **load_kw)
            tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer", **load_kw)
        except SDSAudioError:
            raise
        except Exception as exc:  # hub / file errors come in many types; translate them all
            raise _loading_error(source, is_dir, allow_download, exc) from exc
        return cls(vae, transformer, text_encoder, tokenizer, projection, scheduler_config, device=device,
                   dtype=dtype, cpu_offload=cpu_offload, cfg_batched=cfg_batched, window=window,
                   name=f"stable-audio-open:{source}")

    # -- Prior properties -------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def latent_length(self, n_samples: int) -> int:
        return max(1, math.ceil(n_samples / self.hop_length))

    @contextlib.contextmanager
    def _placed(self, *modules: nn.Module) -> Iterator[None]:
        """Move offloaded modules to the execution device while they run."""
        if not self.cpu_offload:
            yield
            return
        for m in modules:
            m.to(self._device)
        try:
            yield
        finally:
            for m in modules:
                m.to("cpu")

    # -- autoencoder ------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, channels, T)`` float audio -> posterior-mean latents ``(B, 64, ceil(T / hop))`` float32.

        Differentiable with respect to ``audio`` when called with grad enabled
        (latent SDS needs that); decoder SDS calls it under ``torch.no_grad()``.
        """
        if audio.dim() != 3 or audio.shape[1] != self.channels:
            raise ValueError(f"encode expects (batch, {self.channels}, samples), got {tuple(audio.shape)}")
        if not torch.isfinite(audio).all():
            raise SDSAudioError("audio holds NaN or infinite samples; the prior cannot encode it")
        pad = self.latent_length(audio.shape[-1]) * self.hop_length - audio.shape[-1]
        x = torch.nn.functional.pad(audio, (0, pad)).to(device=self._device, dtype=self._dtype)
        with self._placed(self.vae):
            latents = self.vae.encode(x).latent_dist.mean
        return latents.float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, 64, L)`` -> audio ``(B, channels, L * hop)`` float32 (differentiable)."""
        with self._placed(self.vae):
            audio = self.vae.decode(latents.to(device=self._device, dtype=self._dtype)).sample
        return audio.float()

    # -- conditioning -----------------------------------------------------------------
    def _check_prompt(self, prompt: Any, what: str) -> str:
        if not isinstance(prompt, str):
            raise SDSAudioError(f"the {what} must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise SDSAudioError(f"the {what} is empty; describe the sound, e.g. 'kick drum, bass, reverb'")
        return prompt.strip()

    @torch.no_grad()
    def _text_states(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected, masked token states ``(1, N, D)`` (prior dtype) and mask ``(1, N)``; cached per text."""
        if text in self._text_cache:
            self._text_cache.move_to_end(text)
            return self._text_cache[text]
        n_tokens = len(self.tokenizer(text, truncation=False)["input_ids"])
        if n_tokens > self.max_prompt_tokens:
            warnings.warn(f"prompt {text[:40]!r}... has {n_tokens} tokens; the text encoder takes "
                          f"{self.max_prompt_tokens}, the rest is dropped", stacklevel=3)
        tokens = self.tokenizer(text, padding="max_length", max_length=self.max_prompt_tokens, truncation=True,
                                return_tensors="pt")
        ids = tokens["input_ids"].to(self._device)
        mask = tokens["attention_mask"].to(self._device)
        with self._placed(self.text_encoder, self.projection_model):
            states = self.text_encoder(input_ids=ids, attention_mask=mask)[0]
            states = self.projection_model(text_hidden_states=states.to(self._dtype)).text_hidden_states
        states = states * mask.unsqueeze(-1).to(states.dtype)
        self._text_cache[text] = (states, mask)
        if len(self._text_cache) > _CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return states, mask

    @torch.no_grad()
    def _seconds_states(self, seconds: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``seconds_start`` (= 0) and ``seconds_total`` embeddings, each ``(1, 1, D)``."""
        with self._placed(self.projection_model):
            out = self.projection_model(
                start_seconds=torch.zeros(1, device=self._device),
                end_seconds=torch.full((1,), float(seconds), device=self._device))
        return out.seconds_start_hidden_states, out.seconds_end_hidden_states

    def condition(self, prompt: str, negative: str | None = None, seconds: float | None = None) -> Conditioning:
        """Text and duration conditioning for both guidance branches (cached).

        Args:
            prompt: what the sound should be; must not be empty.
            negative: optional negative prompt for the unconditional branch
                (empty or None: all-zero unconditional tokens, as the pipeline does).
            seconds: clip duration for the ``seconds_total`` embedding (default:
                the prior's maximum, 47.55 s for Stable Audio Open 1.0).

        Raises:
            SDSAudioError: empty prompt, or a duration outside ``(0, max_duration_s]``.
        """
        prompt = self._check_prompt(prompt, "prompt")
        negative = negative.strip() if isinstance(negative, str) and negative.strip() else None
        seconds = self.max_duration_s if seconds is None else float(seconds)
        if not (seconds > 0 and math.isfinite(seconds)):
            raise SDSAudioError(f"duration must be a positive number of seconds, got {seconds}")
        if seconds > self.max_duration_s + 1e-6:
            raise SDSAudioError(f"a {seconds:.2f} s clip is longer than this prior's maximum of "
                                f"{self.max_duration_s:.2f} s; shorten the clip")
        key = (prompt, negative, round(seconds, 4))
        if key in self._cond_cache:
            self._cond_cache.move_to_end(key)
            return self._cond_cache[key]
        text, _ = self._text_states(prompt)
        start, total = self._seconds_states(seconds)
        cond_tokens = torch.cat([text, start, total], dim=1)
        if negative is not None:
            neg_text, _ = self._text_states(negative)
            uncond_tokens = torch.cat([neg_text, start, total], dim=1)
        else:
            uncond_tokens = torch.zeros_like(cond_tokens)
        global_states = torch.cat([start, total], dim=2)
        result = Conditioning(prompt=prompt, negative=negative, seconds=seconds, tensors={
            "cond_tokens": cond_tokens, "uncond_tokens": uncond_tokens, "global_states": global_states})
        self._cond_cache[key] = result
        if len(self._cond_cache) > _CACHE_SIZE:
            self._cond_cache.popitem(last=False)
        return result

    # -- noise ------------------------------------------------------------------------
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """``sigma_data * tan(pi t / 2)`` capped at ``sigma_max`` (see :mod:`sds_audio.priors.edm`)."""
        return self.edm.sigma(t)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x0 + sigma(t) * noise`` (EDM variance-exploding form), float32."""
        t = check_noise_levels(t, latents.shape[0])
        s = self.sigma(t).to(latents.device).reshape(-1, *([1] * (latents.dim() - 1)))
        return latents.float() + s * noise.to(latents.device).float()

    def noise_from_x0(self, noisy: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = check_noise_levels(t, noisy.shape[0])
        s = self.sigma(t).to(noisy.device).reshape(-1, *([1] * (noisy.dim() - 1)))
        return (noisy.float() - x0_hat.float()) / s

    # -- the network ------------------------------------------------------------------
    def _rotary(self, n_latent: int) -> tuple[torch.Tensor, torch.Tensor]:
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        key = (n_latent, str(self._device))
        if key not in self._rotary_cache:
            dim = self.transformer.config.attention_head_dim // 2
            cos, sin = get_1d_rotary_pos_embed(dim, n_latent + 1, use_real=True, repeat_interleave_real=False)
            self._rotary_cache[key] = (cos.to(self._device), sin.to(self._device))
        return self._rotary_cache[key]

    def _network(self, x_in: torch.Tensor, c_noise: torch.Tensor, tokens: torch.Tensor,
                 global_states: torch.Tensor) -> torch.Tensor:
        """One DiT forward: preconditioned input ``(N, D, L)`` -> model output ``(N, D, L)`` float32."""
        n = x_in.shape[0]
        out = self.transformer(
            x_in.to(self._dtype), c_noise.to(device=self._device, dtype=self._dtype),
            encoder_hidden_states=tokens.expand(n, -1, -1) if tokens.shape[0] == 1 else tokens,
            global_hidden_states=global_states.expand(n, -1, -1),
            rotary_embedding=self._rotary(x_in.shape[-1]), return_dict=False)[0]
        return out.float()

    def model_output(self, noisy: torch.Tensor, sigma: torch.Tensor, cond: Conditioning,
                     guidance_scale: float = 7.0, batched: bool | None = None) -> torch.Tensor:
        """Guided network output ``F`` (v for Stable Audio Open) at ``sigma`` ``(B,)``; float32.

        ``uncond + g * (cond - uncond)``; ``g == 1`` runs the conditional branch only.
        ``batched`` overrides the prior's ``cfg_batched`` setting.
        """
        batched = self.cfg_batched if batched is None else batched
        x = noisy.to(self._device).float()
        sigma = sigma.to(self._device).float()
        x_in = self.edm.c_in(sigma).reshape(-1, 1, 1) * x
        c_noise = self.edm.c_noise(sigma)
        tensors = cond.tensors
        with self._placed(self.transformer):
            if guidance_scale == 1.0:
                return self._network(x_in, c_noise, tensors["cond_tokens"], tensors["global_states"])
            b = x.shape[0]
            if batched:
                tokens = torch.cat([tensors["uncond_tokens"].expand(b, -1, -1),
                                    tensors["cond_tokens"].expand(b, -1, -1)])
                out = self._network(torch.cat([x_in, x_in]), torch.cat([c_noise, c_noise]), tokens,
                                    tensors["global_states"])
                out_uncond, out_cond = out.chunk(2)
            else:
                out_uncond = self._network(x_in, c_noise, tensors["uncond_tokens"], tensors["global_states"])
                out_cond = self._network(x_in, c_noise, tensors["cond_tokens"], tensors["global_states"])
        return out_uncond + guidance_scale * (out_cond - out_uncond)

    @torch.no_grad()
    def window_latents(self, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the DiT denoises for clip latents ``(B, D, L)`` at levels ``t``: ``(B, D, N)`` float32.

        ``N = sample_size`` (the clip followed by noisy silence) with ``window="full"``
        and a clip shorter than the window; ``N = L`` otherwise.
        """
        t = check_noise_levels(t, noisy.shape[0])
        return self.window.pad(self, noisy.to(self._device), t)

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, cond: Conditioning, guidance_scale: float = 7.0,
                steps: int = 1) -> torch.Tensor:
        """Deterministic ``steps``-step DPM-Solver++ chain from level ``t`` to 0; returns float32 ``x0_hat``.

        ``steps = 1`` returns the model's own clean estimate
        ``c_skip * x + c_out * F(c_in * x, c_noise)`` with guidance applied to ``F``.
        The chain runs on :meth:`window_latents` and ``x0_hat`` ``(B, D, L)`` is its first ``L`` frames.
        """
        t = check_noise_levels(t, noisy.shape[0])
        sigmas = self.edm.chain_sigmas(t, int(steps))
        n_clip = noisy.shape[-1]

        def x0_fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            out = self.model_output(x, sigma, cond, guidance_scale)
            return self.edm.x0_from_output(x, out, sigma.to(x.device))

        x0 = dpm_solver_chain(self.window_latents(noisy, t), sigmas, x0_fn, order=self.edm.solver_order)
        x0 = x0[..., :n_clip]
        if not torch.isfinite(x0).all():
            raise SDSAudioError("the prior returned non-finite values; use dtype float32 or bfloat16")
        return x0


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _load_scheduler_config(source: str, is_dir: bool, load_kw: Mapping[str, Any]) -> dict:
    """The scheduler config as a plain dict, read from the directory or the hub cache."""
    if is_dir:
        path = Path(source) / "scheduler" / "scheduler_config.json"
    else:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(source, "scheduler_config.json", subfolder="scheduler", **load_kw))
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SDSAudioError(f"cannot read the scheduler config {path}: {exc}") from exc


def _loading_error(source: str, is_dir: bool, allow_download: bool, exc: Exception) -> SDSAudioError:
    """Turn a diffusers / transformers / hub loading failure into advice."""
    kind = type(exc).__name__
    text = str(exc)
    if is_dir:
        return SDSAudioError(f"cannot load Stable Audio Open from {source}: {kind}: {text.splitlines()[0] if text else ''}"
                             " -- check that the directory holds a complete diffusers download")
    if "Gated" in kind or "gated" in text or "401" in text or "403" in text:
        return SDSAudioError(
            f"{source} is a gated model: accept its licence on https://huggingface.co/{source}, then log in "
            "with `huggingface-cli login` (or pass token=...), or pass a local directory")
    if "RepositoryNotFound" in kind or "404" in text:
        return SDSAudioError(f"no model {source!r} on the Hugging Face hub; check the name or pass a local directory")
    if not allow_download:
        return SDSAudioError(
            f"no local directory {source!r}, and its weights are not in the local Hugging Face cache. Download them "
            f"once with `huggingface-cli download {source}` (after accepting the licence and logging in), "
            "or pass a local directory (--prior DIR); in Python, load_prior(..., allow_download=True) also fetches "
            "them")
    return SDSAudioError(f"could not download {source!r} ({kind}); check the network connection, or pass a "
                         "local directory")

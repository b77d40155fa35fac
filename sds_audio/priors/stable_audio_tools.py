"""Stable Audio models in stable-audio-tools format as a :class:`~sds_audio.priors.base.Prior` (extra ``sat``).

``stabilityai/stable-audio-open-small`` (and any stable-audio-tools
``diffusion_cond`` model: a ``model_config.json`` plus ``model.safetensors``) is
loaded with stable-audio-tools' own factory, ``create_model_from_config``, and
the weights with :mod:`safetensors` (never a pickle).

Installing: stable-audio-tools 0.0.19 pins old packages (``pandas==2.0.2``,
``laion-clap==1.1.4`` -> ``numpy==1.23.5``, ...) and imports ``pkg_resources``,
which setuptools 81 removed, while torch 2.14 needs ``setuptools>=77.0.3``. Give
it its own environment and resolve everything in one pip call, with the
version pinned (unpinned, pip backtracks to 0.0.17, whose ``pypesq`` fails to
build)::

    python3.11 -m venv sat-env
    sat-env/bin/pip install 'setuptools>=77.0.3,<81' 'stable-audio-tools==0.0.19' -e '.[sat]'

Without it, constructing this prior raises :class:`~sds_audio.errors.SDSAudioError`
naming the extra. The module itself imports nothing from stable-audio-tools.

Text encoder: ``model.safetensors`` holds no T5 weights. stable-audio-tools'
T5 conditioner builds its encoder and tokenizer with ``from_pretrained(name)``
(``t5-base`` for Stable Audio Open), so they must be in the local Hugging Face
cache; :meth:`StableAudioToolsPrior.from_pretrained` holds the hub offline
unless ``allow_download=True``. That encoder runs in float16, as the package
sets it.

Noise parameterisation, read from the model config's
``model.diffusion.diffusion_objective``:

* ``"v"`` (Stable Audio Open 1.0 style): v-diffusion with the cosine schedule,
  which is the EDM form with ``sigma = tan(pi t / 2)``, ``sigma_data = 1``,
  ``c_noise = t``; the same :class:`~sds_audio.priors.edm.EDMParameterization`
  and DPM-Solver++ chain as the diffusers prior.
* ``"rectified_flow"`` / ``"rf_denoiser"`` (Stable Audio Open Small):
  ``x_t = (1 - t) x0 + t noise``, the network predicts ``v = noise - x0`` so
  ``x0_hat = x_t - t v``; the chain takes deterministic Euler (DDIM) steps
  uniform in ``t`` down to 0.

Guidance is stable-audio-tools' own: ``cfg_scale`` is passed to its DiT wrapper,
which batches the conditional and unconditional (or negative-prompt) branches;
the unconditional branch zeroes the cross-attention tokens and keeps the
duration (global) conditioning. stable-audio-tools' own interface defaults to
``cfg_scale = 1`` for ``rf_denoiser`` models (Stable Audio Open Small) and to 7
otherwise; pick the SDS guidance scale accordingly.

Conditioning tensors are made for one prompt (batch 1) and expanded to the
batch of latents at each call, so a batch of noise draws shares one cache entry.

Window: ``denoise`` runs the DiT on the model's full training window
(``sample_size / hop`` latent frames: the clip followed by noisy silence, cropped
after; :mod:`sds_audio.priors.window`) by default, as stable-audio-tools'
generation does with its default ``sample_size``; ``window="clip"`` runs it on the clip's frames only (faster).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from ..errors import SDSAudioError
from .base import Conditioning, Prior, check_noise_levels
from .edm import EDMParameterization, dpm_solver_chain
from .window import LatentWindow

SMALL_HUB_ID = "stabilityai/stable-audio-open-small"
INSTALL_HINT = ("stable-audio-tools is not installed; install the extra in its own environment: "
                "`pip install 'sds-audio[sat]' 'stable-audio-tools==0.0.19' 'setuptools>=77.0.3,<81'` (it pins old "
                "packages and needs pkg_resources), or use the diffusers prior 'stable-audio-open'")

#: stable-audio-tools diffusion objective -> noise form used here
NOISE_FORMS = {"v": "v", "rectified_flow": "flow", "rf_denoiser": "flow"}


def require_stable_audio_tools() -> Any:
    """Import stable-audio-tools or raise SDSAudioError naming the extra."""
    try:
        return importlib.import_module("stable_audio_tools")
    except ImportError as exc:
        raise SDSAudioError(INSTALL_HINT) from exc


def noise_form(model_config: Mapping[str, Any]) -> str:
    """``"v"`` or ``"flow"`` from a stable-audio-tools model config (pure mapping).

    Raises:
        SDSAudioError: not a ``diffusion_cond`` model, or an objective this library does not know.
    """
    if model_config.get("model_type") != "diffusion_cond":
        raise SDSAudioError(f"model_type {model_config.get('model_type')!r} is not a text-conditioned diffusion "
                            "model ('diffusion_cond')")
    objective = model_config.get("model", {}).get("diffusion", {}).get("diffusion_objective", "v")
    if objective not in NOISE_FORMS:
        raise SDSAudioError(f"unsupported diffusion_objective {objective!r}; known: {', '.join(NOISE_FORMS)}")
    return NOISE_FORMS[objective]


def conditioning_ids(model_config: Mapping[str, Any]) -> list[str]:
    """The conditioner ids a model config declares (e.g. ``prompt``, ``seconds_start``, ``seconds_total``)."""
    configs = model_config.get("model", {}).get("conditioning", {}).get("configs", [])
    return [c["id"] for c in configs if "id" in c]


def conditioning_metadata(model_config: Mapping[str, Any], prompt: str, seconds: float) -> list[dict[str, Any]]:
    """The one-item batch of metadata stable-audio-tools' conditioner expects."""
    ids = conditioning_ids(model_config)
    if "prompt" not in ids:
        raise SDSAudioError("this stable-audio-tools model has no 'prompt' conditioner; it cannot take text")
    item: dict[str, Any] = {"prompt": prompt}
    if "seconds_start" in ids:
        item["seconds_start"] = 0.0
    if "seconds_total" in ids:
        item["seconds_total"] = float(seconds)
    return [item]


def t5_model_names(model_config: Mapping[str, Any]) -> list[str]:
    """The T5 checkpoints the config's ``t5`` conditioners load with ``from_pretrained`` (default ``t5-base``)."""
    configs = model_config.get("model", {}).get("conditioning", {}).get("configs", [])
    return [c.get("config", {}).get("t5_model_name", "t5-base") for c in configs if c.get("type") == "t5"]


@contextlib.contextmanager
def hub_offline(offline: bool = True) -> Iterator[None]:
    """Hold ``huggingface_hub`` in offline mode (its ``HF_HUB_OFFLINE`` switch) inside the block.

    stable-audio-tools' T5 conditioner calls ``from_pretrained`` with no way to
    pass ``local_files_only``; this makes it read the local cache only.
    """
    if not offline:
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def expand_batch(tensors: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """Conditioning tensors whose leading (batch) axis is 1, expanded to ``batch`` (views, no copies).

    The DiT concatenates the conditional and unconditional branches along the
    batch axis, so the conditioning must have the latents' batch size.
    """
    out: dict[str, Any] = {}
    for key, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] != batch:
            if value.shape[0] != 1:
                raise ValueError(f"conditioning {key!r} has batch {value.shape[0]}, latents have {batch}")
            value = value.expand(batch, *value.shape[1:])
        out[key] = value
    return out


class StableAudioToolsPrior(Prior):
    """A stable-audio-tools ``diffusion_cond`` model seen through the Prior protocol.

    Args:
        model: the ``ConditionedDiffusionModelWrapper`` built by ``create_model_from_config``
            (a latent model: it needs an autoencoder pretransform).
        model_config: its config dict.
        device, dtype: where and in what precision the model runs.
        window: ``"full"`` (default): denoise the model's whole training window;
            ``"clip"``: only the clip's frames (faster).
    """

    def __init__(self, model: torch.nn.Module, model_config: Mapping[str, Any], *, device=None, dtype=None,
                 window: str = "full", name: str = "stable-audio-tools"):
        self.form = noise_form(model_config)
        self.model_config = dict(model_config)
        pretransform = getattr(model, "pretransform", None)
        if pretransform is None or not hasattr(pretransform, "model"):
            raise SDSAudioError("this stable-audio-tools model has no autoencoder pretransform; only latent "
                                "diffusion models can serve as a prior")
        self._device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self._dtype = dtype or torch.float32
        # The prior keeps the whole model in one dtype; the pretransform's own half switch would
        # recast the autoencoder to float16 on its first decode and break encode afterwards.
        pretransform.model_half = False
        self.model = model.eval().requires_grad_(False).to(device=self._device, dtype=self._dtype)
        self.name = name
        self.hop_length = int(pretransform.downsampling_ratio)
        self.sample_rate = int(model_config["sample_rate"])
        self.channels = int(model_config.get("audio_channels", 2))
        self.latent_channels = int(model.io_channels)
        self.latent_rate = self.sample_rate / self.hop_length
        self.max_duration_s = float(model_config["sample_size"]) / self.sample_rate
        self.window = LatentWindow(window, int(model_config["sample_size"]) // self.hop_length, self.hop_length)
        self.edm = EDMParameterization(sigma_min=0.3, sigma_max=500.0, sigma_data=1.0,
                                       prediction_type="v_prediction", noise_conditioning="atan", solver_order=2)
        self._cache: dict[tuple, Conditioning] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = SMALL_HUB_ID, *, device=None, dtype=None,
                        allow_download: bool = False, token: str | None = None,
                        window: str = "full") -> "StableAudioToolsPrior":
        """Load ``model_config.json`` + ``model.safetensors`` from a directory or a hub id.

        The T5 text encoder is not in ``model.safetensors``: stable-audio-tools loads it by
        name (``t5-base``) from the Hugging Face cache. Nothing touches the network unless
        ``allow_download=True``. ``window``: ``"full"`` or ``"clip"`` (see the class).

        Raises:
            SDSAudioError: missing files, a model the cache cannot complete, or weights that
                do not fit the config, with what to do.
        """
        require_stable_audio_tools()
        from safetensors.torch import load_file
        from stable_audio_tools.models.factory import create_model_from_config

        local = Path(name_or_path).expanduser()
        if local.is_dir():
            config_path, weights_path = local / "model_config.json", local / "model.safetensors"
            if not (config_path.is_file() and weights_path.is_file()):
                raise SDSAudioError(f"{local} needs model_config.json and model.safetensors (stable-audio-tools format)")
        else:
            from huggingface_hub import hf_hub_download

            try:
                kw = {"local_files_only": not allow_download, "token": token}
                config_path = Path(hf_hub_download(str(name_or_path), "model_config.json", **kw))
                weights_path = Path(hf_hub_download(str(name_or_path), "model.safetensors", **kw))
            except Exception as exc:  # hub errors come in many types
                raise SDSAudioError(
                    f"cannot get {name_or_path!r}: {type(exc).__name__}. Accept the licence on the hub, log in with "
                    "`huggingface-cli login`, download it once (or pass allow_download=True), or pass a local "
                    "directory") from exc
        try:
            model_config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise SDSAudioError(f"cannot read {config_path}: {exc}") from exc
        noise_form(model_config)  # reject non-text models before building anything
        try:
            with hub_offline(not allow_download):
                model = create_model_from_config(model_config)
        except Exception as exc:  # missing T5 files, bad config keys: many types
            t5 = ", ".join(t5_model_names(model_config)) or "none"
            raise SDSAudioError(
                f"stable-audio-tools could not build the model of {config_path} ({type(exc).__name__}: {exc}). "
                f"Its T5 text encoder ({t5}) is loaded by name from the Hugging Face cache: download it once "
                "(pass allow_download=True) or check the config") from exc
        try:
            model.load_state_dict(load_file(str(weights_path)))
        except Exception as exc:  # safetensors header errors, missing / unexpected keys, shapes
            raise SDSAudioError(f"{weights_path} does not hold weights for the model of {config_path}: "
                                f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        return cls(model, model_config, device=device, dtype=dtype, window=window,
                   name=f"stable-audio-tools:{name_or_path}")

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def latent_length(self, n_samples: int) -> int:
        return max(1, math.ceil(n_samples / self.hop_length))

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, channels, T)`` -> posterior-mean latents ``(B, D, ceil(T / hop))`` float32.

        The autoencoder's pre-bottleneck mean, divided by the pretransform's ``scale``
        as its own ``encode`` does (which would draw a sample instead). Differentiable
        with respect to ``audio`` when grad is on.
        """
        if audio.dim() != 3 or audio.shape[1] != self.channels:
            raise ValueError(f"encode expects (batch, {self.channels}, samples), got {tuple(audio.shape)}")
        if not torch.isfinite(audio).all():
            raise SDSAudioError("audio holds NaN or infinite samples; the prior cannot encode it")
        pad = self.latent_length(audio.shape[-1]) * self.hop_length - audio.shape[-1]
        x = torch.nn.functional.pad(audio, (0, pad)).to(self._device, self._dtype)
        pretransform = self.model.pretransform
        pre = pretransform.model.encode(x, skip_bottleneck=True)
        mean = pre.chunk(2, dim=1)[0] if pre.shape[1] == 2 * self.latent_channels else pre
        return (mean / getattr(pretransform, "scale", 1.0)).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, D, L)`` -> audio ``(B, channels, L * hop)`` float32 (differentiable)."""
        return self.model.pretransform.decode(latents.to(self._device, self._dtype)).float()

    def condition(self, prompt: str, negative: str | None = None, seconds: float | None = None) -> Conditioning:
        if not isinstance(prompt, str) or not prompt.strip():
            raise SDSAudioError("the prompt is empty; describe the sound, e.g. 'kick drum, bass, reverb'")
        seconds = self.max_duration_s if seconds is None else float(seconds)
        if not 0 < seconds <= self.max_duration_s + 1e-6:
            raise SDSAudioError(f"duration {seconds:.2f} s is outside (0, {self.max_duration_s:.2f}] s for this prior")
        negative = negative.strip() if isinstance(negative, str) and negative.strip() else None
        key = (prompt.strip(), negative, round(seconds, 4))
        if key not in self._cache:
            with torch.no_grad():
                cond = self.model.conditioner(conditioning_metadata(self.model_config, key[0], seconds), self._device)
                inputs = self.model.get_conditioning_inputs(cond)
                if negative is not None:
                    neg = self.model.conditioner(conditioning_metadata(self.model_config, negative, seconds),
                                                 self._device)
                    inputs.update(self.model.get_conditioning_inputs(neg, negative=True))
            self._cache[key] = Conditioning(prompt=key[0], negative=negative, seconds=seconds, tensors=inputs)
        return self._cache[key]

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """``tan(pi t / 2)`` capped at 500 (v objective) or ``t`` (flow objectives)."""
        t = torch.as_tensor(t, dtype=torch.float32)
        return self.edm.sigma(t) if self.form == "v" else t

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x0 + sigma noise`` (v objective, EDM form) or ``(1 - t) x0 + t noise`` (flow), float32."""
        s = self.sigma(check_noise_levels(t, latents.shape[0])).to(latents.device).reshape(-1, 1, 1)
        noise = noise.to(latents.device).float()
        if self.form == "v":
            return latents.float() + s * noise
        return (1 - s) * latents.float() + s * noise

    def noise_from_x0(self, noisy: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.sigma(check_noise_levels(t, noisy.shape[0])).to(noisy.device).reshape(-1, 1, 1)
        x0_hat = x0_hat.to(noisy.device).float()
        if self.form == "v":
            return (noisy.float() - x0_hat) / s
        return (noisy.float() - (1 - s) * x0_hat) / s

    def _network(self, x: torch.Tensor, timestep: torch.Tensor, cond: Conditioning, g: float) -> torch.Tensor:
        """The DiT's guided output for latents ``x`` ``(B, D, L)`` at network time ``timestep`` ``(B,)``."""
        batch = x.shape[0]
        out = self.model.model(x.to(self._device, self._dtype), timestep.to(self._device, self._dtype).expand(batch),
                               **expand_batch(cond.tensors, batch), cfg_scale=float(g), batch_cfg=True)
        return out.float()

    @torch.no_grad()
    def window_latents(self, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the DiT denoises for clip latents ``(B, D, L)`` at levels ``t``: ``(B, D, N)`` float32
        (``N`` = the training window with ``window="full"`` and a shorter clip, else ``L``)."""
        t = check_noise_levels(t, noisy.shape[0])
        return self.window.pad(self, noisy.to(self._device), t)

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, cond: Conditioning, guidance_scale: float = 7.0,
                steps: int = 1) -> torch.Tensor:
        """Deterministic ``steps``-step chain from level ``t`` to 0 on :meth:`window_latents`;
        returns ``x0_hat`` ``(B, D, L)`` float32 (the window's first ``L`` frames)."""
        if int(steps) < 1:
            raise SDSAudioError(f"denoising steps must be >= 1, got {steps}")
        t = check_noise_levels(t, noisy.shape[0])
        n_clip = noisy.shape[-1]
        x = self.window_latents(noisy, t)
        if self.form == "v":
            def x0_fn(xs: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
                sigma = sigma.to(self._device)
                out = self._network(self.edm.c_in(sigma).reshape(-1, 1, 1) * xs, self.edm.c_noise(sigma), cond,
                                    guidance_scale)
                return self.edm.x0_from_output(xs, out, sigma)

            return dpm_solver_chain(x, self.edm.chain_sigmas(t, int(steps)), x0_fn, order=2)[..., :n_clip]
        grid = torch.linspace(1.0, 0.0, int(steps) + 1)[:, None] * t[None, :]
        for i in range(int(steps)):
            t_now, t_next = grid[i].to(self._device), grid[i + 1].to(self._device)
            x0 = x - t_now.reshape(-1, 1, 1) * self._network(x, t_now, cond, guidance_scale)
            x = x0 + (t_next / t_now).reshape(-1, 1, 1) * (x - x0)  # DDIM / Euler step along the straight path
        return x[..., :n_clip]

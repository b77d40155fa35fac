"""Stable Audio models in stable-audio-tools format as a :class:`~sds_audio.priors.base.Prior` (extra ``sat``).

``stabilityai/stable-audio-open-small`` (and any stable-audio-tools
``diffusion_cond`` model: a ``model_config.json`` plus ``model.safetensors``) is
loaded with stable-audio-tools' own factory, ``create_model_from_config``, and
the weights with :mod:`safetensors` (never a pickle).

Installing: stable-audio-tools pins old versions of torch, transformers and
other packages, so it does not fit the core environment. Give it its own::

    python -m venv sat-env && . sat-env/bin/activate
    pip install 'sds-audio[sat]'        # pulls stable-audio-tools and its pins

Without it, constructing this prior raises :class:`~sds_audio.errors.SDSAudioError`
naming the extra. The module itself imports nothing from stable-audio-tools.

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
which batches the conditional and unconditional (or negative-prompt) branches.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import SDSAudioError
from .base import Conditioning, Prior
from .edm import EDMParameterization, dpm_solver_chain

SMALL_HUB_ID = "stabilityai/stable-audio-open-small"
INSTALL_HINT = ("stable-audio-tools is not installed; install the extra in its own environment: "
                "`pip install 'sds-audio[sat]'` (it pins old torch/transformers versions), or use the "
                "diffusers prior 'stable-audio-open'")

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


class StableAudioToolsPrior(Prior):
    """A stable-audio-tools ``diffusion_cond`` model seen through the Prior protocol.

    Args:
        model: the ``ConditionedDiffusionModelWrapper`` built by ``create_model_from_config``.
        model_config: its config dict.
        device, dtype: where and in what precision the model runs.
    """

    def __init__(self, model: torch.nn.Module, model_config: Mapping[str, Any], *, device=None, dtype=None,
                 name: str = "stable-audio-tools"):
        self.form = noise_form(model_config)
        self.model_config = dict(model_config)
        self._device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self._dtype = dtype or torch.float32
        self.model = model.eval().requires_grad_(False).to(device=self._device, dtype=self._dtype)
        self.name = name
        pretransform = model.pretransform
        self.hop_length = int(pretransform.downsampling_ratio)
        self.sample_rate = int(model_config["sample_rate"])
        self.channels = int(model_config.get("audio_channels", 2))
        self.latent_channels = int(model.io_channels)
        self.latent_rate = self.sample_rate / self.hop_length
        self.max_duration_s = float(model_config["sample_size"]) / self.sample_rate
        self.edm = EDMParameterization(sigma_min=0.3, sigma_max=500.0, sigma_data=1.0,
                                       prediction_type="v_prediction", noise_conditioning="atan", solver_order=2)
        self._cache: dict[tuple, Conditioning] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = SMALL_HUB_ID, *, device=None, dtype=None,
                        allow_download: bool = False, token: str | None = None) -> "StableAudioToolsPrior":
        """Load ``model_config.json`` + ``model.safetensors`` from a directory or a hub id."""
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
        model_config = json.loads(config_path.read_text())
        model = create_model_from_config(model_config)
        model.load_state_dict(load_file(str(weights_path)))
        return cls(model, model_config, device=device, dtype=dtype, name=f"stable-audio-tools:{name_or_path}")

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def latent_length(self, n_samples: int) -> int:
        return max(1, math.ceil(n_samples / self.hop_length))

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Posterior-mean latents ``(B, D, L)`` float32 (pre-bottleneck mean, scaled as the pretransform does)."""
        if not torch.isfinite(audio).all():
            raise SDSAudioError("audio holds NaN or infinite samples; the prior cannot encode it")
        pad = self.latent_length(audio.shape[-1]) * self.hop_length - audio.shape[-1]
        x = torch.nn.functional.pad(audio, (0, pad)).to(self._device, self._dtype)
        pretransform = self.model.pretransform
        pre = pretransform.model.encode(x, skip_bottleneck=True)
        mean = pre.chunk(2, dim=1)[0] if pre.shape[1] == 2 * self.latent_channels else pre
        return (mean / getattr(pretransform, "scale", 1.0)).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
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
        """``tan(pi t / 2)`` (v objective) or ``t`` (flow objectives)."""
        t = torch.as_tensor(t, dtype=torch.float32)
        return self.edm.sigma(t) if self.form == "v" else t

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.sigma(t).to(latents.device).reshape(-1, 1, 1)
        if self.form == "v":
            return latents.float() + s * noise.float()
        return (1 - s) * latents.float() + s * noise.float()

    def noise_from_x0(self, noisy: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.sigma(t).to(noisy.device).reshape(-1, 1, 1)
        if self.form == "v":
            return (noisy.float() - x0_hat.float()) / s
        return (noisy.float() - (1 - s) * x0_hat.float()) / s

    def _network(self, x: torch.Tensor, timestep: torch.Tensor, cond: Conditioning, g: float) -> torch.Tensor:
        out = self.model.model(x.to(self._dtype), timestep.to(self._device, self._dtype), **cond.tensors,
                               cfg_scale=float(g), batch_cfg=True)
        return out.float()

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, cond: Conditioning, guidance_scale: float = 7.0,
                steps: int = 1) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).cpu()
        x = noisy.to(self._device).float()
        if self.form == "v":
            def x0_fn(xs: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
                sigma = sigma.to(self._device)
                out = self._network(self.edm.c_in(sigma).reshape(-1, 1, 1) * xs, self.edm.c_noise(sigma), cond,
                                    guidance_scale)
                return self.edm.x0_from_output(xs, out, sigma)

            return dpm_solver_chain(x, self.edm.chain_sigmas(t, int(steps)), x0_fn, order=2)
        grid = torch.linspace(1.0, 0.0, int(steps) + 1)[:, None] * t[None, :]
        for i in range(int(steps)):
            t_now, t_next = grid[i].to(self._device), grid[i + 1].to(self._device)
            x0 = x - t_now.reshape(-1, 1, 1) * self._network(x, t_now, cond, guidance_scale)
            x = x0 + (t_next / t_now).reshape(-1, 1, 1) * (x - x0)  # DDIM / Euler step along the straight path
        return x

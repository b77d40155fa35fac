"""``load_prior``: a prior by name or path.

An explicit table maps names to loader functions that import their module only
when called (no registration by import side effects, no heavy imports for a
name that is not used):

=============================  ==============================================================
``stable-audio-open``          diffusers components of ``stabilityai/stable-audio-open-1.0``
                               from the local Hugging Face cache (``allow_download=True`` to
                               fetch; the model is gated: accept the licence and log in)
``stable-audio-open-small``    ``stabilityai/stable-audio-open-small`` through
                               stable-audio-tools (extra ``sat``)
``embedded``                   the codec + flow-matching prior shipped in ``sds_audio/assets``
a directory                    diffusers layout (``vae/``, ``transformer/``, ...) or
                               stable-audio-tools format (``model_config.json`` + ``model.safetensors``)
``owner/name``                 a Hugging Face hub id in diffusers layout (the user chose it)
=============================  ==============================================================
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import SDSAudioError
from .base import Prior


def _load_stable_audio_open(source: str, device, dtype, **kwargs: Any) -> Prior:
    from .stable_audio import StableAudioOpenPrior

    return StableAudioOpenPrior.from_pretrained(source, device=device, dtype=dtype, **kwargs)


def _load_stable_audio_tools(source: str, device, dtype, **kwargs: Any) -> Prior:
    from .stable_audio_tools import StableAudioToolsPrior, require_stable_audio_tools

    require_stable_audio_tools()
    accepted = {"allow_download", "token", "window"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise SDSAudioError(f"option(s) {', '.join(unknown)} do not apply to stable-audio-tools priors "
                            f"(they take {', '.join(sorted(accepted))})")
    return StableAudioToolsPrior.from_pretrained(source, device=device, dtype=dtype, **kwargs)


def _load_embedded(source: str, device, dtype, **kwargs: Any) -> Prior:
    try:
        module = importlib.import_module("sds_audio.priors.embedded")
    except ImportError as exc:
        raise SDSAudioError("the embedded prior is not part of this installation (sds_audio.priors.embedded is "
                            "missing); reinstall sds-audio, or use --prior stable-audio-open") from exc
    factory = getattr(module, "load_embedded_prior", None)
    if factory is None:
        raise SDSAudioError("sds_audio.priors.embedded has no load_embedded_prior(); reinstall sds-audio")
    try:
        return factory(device=device, dtype=dtype, **kwargs)
    except FileNotFoundError as exc:
        raise SDSAudioError(f"the embedded prior's weights are missing ({exc.filename or exc}); reinstall "
                            "sds-audio, or train them with `sds-audio train codec` and `sds-audio train flow`") from exc


#: name -> (default source, loader)
PRIORS: dict[str, tuple[str, Callable[..., Prior]]] = {
    "stable-audio-open": ("stabilityai/stable-audio-open-1.0", _load_stable_audio_open),
    "stable-audio-open-small": ("stabilityai/stable-audio-open-small", _load_stable_audio_tools),
    "embedded": ("", _load_embedded),
}


def known_priors() -> list[str]:
    return list(PRIORS)


def _is_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") for p in parts) and "\\" not in text


EMBEDDED_OPTIONS = frozenset({"codec_precision", "anchor"})


def _options_for(embedded: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The loader options that apply to this kind of prior (the embedded prior's or the others')."""
    return {k: v for k, v in kwargs.items() if (k in EMBEDDED_OPTIONS) == embedded}


def load_prior(name_or_path: str | os.PathLike, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, **kwargs: Any) -> Prior:
    """Load a prior by registry name, local directory or hub id.

    Args:
        name_or_path: a name from :data:`PRIORS`, a directory, or ``owner/name`` on the hub.
            A directory holding ``flow.safetensors`` (and ``codec.safetensors``) is an
            embedded prior trained by ``sds-audio train``.
        device, dtype: passed to the prior.
        **kwargs: loader options, e.g. ``allow_download=True``, ``token=...``,
            ``cpu_offload=True`` (Stable Audio Open), ``window="full"|"clip"`` (both Stable
            Audio priors: denoise the model's whole training window, the default, or the
            clip's frames only); ``codec_precision`` is the one
            the embedded prior takes (see :class:`~sds_audio.priors.embedded.EmbeddedPrior`);
            each kind of prior ignores the others' options.

    Raises:
        SDSAudioError: unknown name (the message lists the known ones), missing
            files or weights, or a missing optional dependency.
    """
    text = str(name_or_path)
    if text in PRIORS:
        source, loader = PRIORS[text]
        return loader(source, device, dtype, **_options_for(text == "embedded", kwargs))
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "model_config.json").is_file():
            return _load_stable_audio_tools(str(path), device, dtype, **_options_for(False, kwargs))
        if (path / "transformer").is_dir() or (path / "model_index.json").is_file():
            return _load_stable_audio_open(str(path), device, dtype, **_options_for(False, kwargs))
        if (path / "flow.safetensors").is_file():
            from .embedded import load_embedded_prior

            return load_embedded_prior(device, dtype, assets_dir=path, **_options_for(True, kwargs))
        raise SDSAudioError(f"{path} is neither a diffusers Stable Audio directory (vae/, transformer/, ...), a "
                            "stable-audio-tools one (model_config.json + model.safetensors) nor an embedded one "
                            "(codec.safetensors + flow.safetensors)")
    if _is_hub_id(text) and not path.exists():
        return _load_stable_audio_open(text, device, dtype, **_options_for(False, kwargs))
    raise SDSAudioError(f"unknown prior {text!r}: not a known name ({', '.join(PRIORS)}), an existing directory, "
                        "or a hub id 'owner/name'")


def _hub_cached(repo_id: str, filename: str) -> bool:
    """Whether ``filename`` of ``repo_id`` is in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str)


def describe_priors() -> dict[str, str]:
    """One status line per registry name, found without loading any model or touching the network."""
    import importlib.util

    status: dict[str, str] = {}
    assets = Path(__file__).resolve().parent.parent / "assets"
    missing = [n for n in ("codec.safetensors", "flow.safetensors") if not (assets / n).is_file()]
    status["embedded"] = ("available (shipped weights)" if not missing else
                          f"weights missing ({', '.join(missing)}): train with `sds-audio train codec|flow`")
    sao = PRIORS["stable-audio-open"][0]
    status["stable-audio-open"] = (f"available ({sao} in the local Hugging Face cache)"
                                   if _hub_cached(sao, "model_index.json") else
                                   f"not downloaded: accept the licence of {sao} on huggingface.co, log in, and "
                                   "pass allow_download=True once (or pass a local directory)")
    small = PRIORS["stable-audio-open-small"][0]
    if importlib.util.find_spec("stable_audio_tools") is None:
        status["stable-audio-open-small"] = "needs the extra: pip install 'sds-audio[sat]' (in its own environment)"
    else:
        status["stable-audio-open-small"] = (f"available ({small} in the local cache)"
                                             if _hub_cached(small, "model_config.json") else f"{small} not downloaded")
    return status

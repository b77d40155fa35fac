"""The audio-text judge: a small contrastive (CLAP-style) model that scores prompt alignment.

* :mod:`sds_audio.judge.model`: the model, its weights files and the scoring API
  (:func:`judge_score`, :func:`classify`, :func:`embed_audio`, :func:`embed_text`);
* :mod:`sds_audio.judge.train`: training on a captioned corpus and zero-shot evaluation.
"""

from .model import (DEFAULT_JUDGE_PATH, Classification, JudgeConfig, JudgeModel, classify, embed_audio, embed_text,
                    judge_score, load_default_judge, load_judge, save_judge)
from .train import evaluate_judge, train_judge

__all__ = [
    "JudgeConfig", "JudgeModel", "Classification", "save_judge", "load_judge", "load_default_judge",
    "DEFAULT_JUDGE_PATH", "judge_score", "classify", "embed_audio", "embed_text", "evaluate_judge",
    "train_judge",
]

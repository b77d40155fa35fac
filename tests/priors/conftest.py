"""Fixtures for the prior tests: a tiny randomly initialised Stable Audio Open, built offline.

The components are diffusers' / transformers' own classes with tiny configs (as
diffusers' fast pipeline tests do); the tokenizer is a word-level
``tokenizers`` model wrapped in ``PreTrainedTokenizerFast``, so nothing is
downloaded.
"""

from __future__ import annotations

import pytest
import torch

TINY_SAMPLE_RATE = 4000
TINY_MAX_TOKENS = 12
WORDS = ("kick drum bass reverb snare hat bell pad noise low high bright dark soft loud metal wood glass "
         "hit pot spoon a the of with and").split()


def build_tokenizer(max_tokens: int = TINY_MAX_TOKENS):
    """Word-level tokenizer over a small vocabulary, padding with ``<pad>`` = id 0."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>",
                                   model_max_length=max_tokens)


def build_tiny_components(seed: int = 0) -> dict:
    """The six pipeline components at toy sizes (latent 4 x hop 8 at 4 kHz, 2 DiT layers)."""
    from diffusers import AutoencoderOobleck, StableAudioDiTModel
    from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=[2, 4], channel_multiples=[1, 2],
                             decoder_channels=4, decoder_input_channels=4, audio_channels=2,
                             sampling_rate=TINY_SAMPLE_RATE)
    transformer = StableAudioDiTModel(sample_size=256, in_channels=4, num_layers=2, attention_head_dim=8,
                                      num_attention_heads=2, num_key_value_attention_heads=1, out_channels=4,
                                      cross_attention_dim=16, time_proj_dim=8, global_states_input_dim=16,
                                      cross_attention_input_dim=8)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=12, d_kv=6, d_ff=24, num_layers=1,
                                           num_heads=2, decoder_start_token_id=0, pad_token_id=0))
    projection = StableAudioProjectionModel(text_encoder_dim=12, conditioning_dim=8, min_value=0, max_value=1)
    scheduler_config = {"_class_name": "CosineDPMSolverMultistepScheduler", "sigma_min": 0.3, "sigma_max": 500.0,
                        "sigma_data": 1.0, "prediction_type": "v_prediction", "solver_order": 2,
                        "sigma_schedule": "exponential", "num_train_timesteps": 1000, "rho": 7.0,
                        "solver_type": "midpoint", "lower_order_final": True, "euler_at_final": False,
                        "final_sigmas_type": "zero"}
    return {"vae": vae, "transformer": transformer, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "projection_model": projection, "scheduler_config": scheduler_config}


def build_tiny_prior(seed: int = 0, **kwargs):
    from sds_audio.priors.stable_audio import StableAudioOpenPrior

    return StableAudioOpenPrior(**build_tiny_components(seed), device="cpu", **kwargs)


@pytest.fixture(scope="module")
def tiny_components():
    return build_tiny_components()


@pytest.fixture(scope="module")
def tiny_prior():
    return build_tiny_prior()


@pytest.fixture(scope="module")
def tiny_builder():
    """The builder functions, for tests that need fresh or saved components."""
    return {"components": build_tiny_components, "prior": build_tiny_prior, "tokenizer": build_tokenizer}

"""Cost of one decoder-SDS update against Stable Audio Open, compared with the pipeline's own generation.

Builds a *randomly initialised* Stable Audio Open with the real 1.0 sizes
(diffusers' default ``AutoencoderOobleck`` and ``StableAudioDiTModel`` configs,
a 768-wide projection model with seconds range [0, 512], a T5-base-sized
``T5EncoderModel`` and a local word-level tokenizer with 128 tokens), so no
weights are needed: timings do not depend on weight values.

For each clip duration, number of denoising steps ``k`` and denoising window
(``--windows``: ``full``, the prior's default, runs the DiT on the transformer's
whole ``sample_size`` window as the pipeline does; ``clip`` on the clip's frames
only) it prints medians of:

* the SDS update split into encode / denoise (``k`` guided DiT evaluations) /
  decode / spectral loss (STFTs of render and target, loss, audio-space
  gradient) / backward (the surrogate's backward into a raw stereo waveform at
  44.1 kHz: no renderer cost is included),
* the same-duration generation of ``diffusers.StableAudioPipeline`` built from the
  same components with ``num_inference_steps=k`` (prompt encoding, ``k`` guided
  DiT evaluations, decode), on the same number of frames as the SDS row: its own
  full ``sample_size`` window for ``full`` rows (what the pipeline always does),
  the DiT's ``sample_size`` set to the clip's latent length for ``clip`` rows;
  with its own split (prompt encoding, DiT evaluations, decode; the rest of
  ``pipeline`` is the scheduler and latent preparation),
* their ratio (goal: SDS <= 1.3 x generation) and the peak memory (CUDA: peak
  allocated per row; CPU: the process's peak resident set so far).

A last table gives, per duration and ``k``, the full window's SDS time over the
clip window's (the cost of denoising as the pipeline does).

With ``--preset-steps N`` it then times a whole prompt-to-preset run at that size:
:func:`sds_audio.tasks.synthesize.synthesize` of an ``FMSynth`` (4 restarts, 1.5 s,
the task's default SDS options: ``k = 4``, guidance 5, no judge, no checkpoints)
for ``N`` steps, and prints its wall time, seconds per step and peak memory. With
``--separate-steps N`` it times :func:`sds_audio.tasks.separate.separate` of a 10 s
two-source mixture (a decaying 110 Hz tone plus 8 Hz noise bursts; 10 s or the prior's
maximum if shorter) under two prompts for ``N`` steps with the default
:class:`~sds_audio.tasks.separate.SeparationConfig` (prior-mask start included).

Usage::

    python benchmarks/sds_step.py --device cuda --dtype bf16 --repeats 5
    python benchmarks/sds_step.py --device cpu --dtype fp32 --repeats 1 --durations 1 10
    python benchmarks/sds_step.py --tiny --device cpu --threads 1 --durations 0.5 1 --steps 1 4
    python benchmarks/sds_step.py --device cuda --durations 1 --steps 4 --preset-steps 150 --separate-steps 200
"""

from __future__ import annotations

import argparse
import copy
import math
import resource
import statistics
import sys
import time
import warnings
from contextlib import contextmanager

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PROMPT = "kick drum, bass, reverb"


def build_tokenizer(max_tokens: int = 128):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "kick drum bass reverb snare hat bell pad noise hit pot wooden spoon a the , .".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>",
                                   model_max_length=max_tokens)


def build_components(seed: int = 0, tiny: bool = False) -> dict:
    """Stable Audio Open 1.0 sizes, random weights (``tiny``: toy sizes, to smoke-test this script)."""
    from diffusers import AutoencoderOobleck, StableAudioDiTModel
    from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    if tiny:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae = AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=[2, 4], channel_multiples=[1, 2],
                                     decoder_channels=4, decoder_input_channels=4, sampling_rate=44100)
        transformer = StableAudioDiTModel(sample_size=8192, in_channels=4, num_layers=2, attention_head_dim=8,
                                          num_attention_heads=2, num_key_value_attention_heads=1, out_channels=4,
                                          cross_attention_dim=16, time_proj_dim=8, global_states_input_dim=16,
                                          cross_attention_input_dim=8)
        width, t5 = 8, T5Config(vocab_size=32, d_model=12, d_kv=6, d_ff=24, num_layers=1, num_heads=2,
                                decoder_start_token_id=0, pad_token_id=0)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae = AutoencoderOobleck()
        transformer = StableAudioDiTModel()
        width, t5 = 768, T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
                                  decoder_start_token_id=0, pad_token_id=0)
    projection = StableAudioProjectionModel(text_encoder_dim=t5.d_model, conditioning_dim=width, min_value=0,
                                            max_value=512)
    text_encoder = T5EncoderModel(t5)
    scheduler_config = {"_class_name": "CosineDPMSolverMultistepScheduler", "sigma_min": 0.3, "sigma_max": 500.0,
                        "sigma_data": 1.0, "prediction_type": "v_prediction", "solver_order": 2,
                        "sigma_schedule": "exponential"}
    return {"vae": vae, "transformer": transformer, "text_encoder": text_encoder, "tokenizer": build_tokenizer(),
            "projection_model": projection, "scheduler_config": scheduler_config}


class Clock:
    """Accumulates wall time per label; synchronises CUDA around each measurement."""

    def __init__(self, device: torch.device):
        self.device = device
        self.totals: dict[str, float] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, label: str):
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.totals[label] = self.totals.get(label, 0.0) + time.perf_counter() - start

    def wrap(self, obj, name: str, label: str) -> None:
        """Time every call of ``obj.name`` under ``label`` (instance attribute shadows the method)."""
        method = getattr(obj, name)

        def timed(*args, **kwargs):
            with self(label):
                return method(*args, **kwargs)

        setattr(obj, name, timed)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def time_sds(prior, duration_s: float, steps: int, repeats: int, guidance: float) -> tuple[dict, float]:
    from sds_audio.sds import SDSConfig, SDSObjective

    device = prior.device
    n = int(round(duration_s * prior.sample_rate))
    noise = 0.1 * torch.randn(1, prior.channels, n, generator=torch.Generator().manual_seed(0))
    wave = torch.nn.Parameter(noise.to(device))
    sds = SDSObjective(prior, PROMPT, SDSConfig(denoise_steps=steps, guidance_scale=guidance))
    clock = Clock(device)
    for name, label in (("encode", "encode"), ("denoise", "denoise"), ("decode", "decode")):
        clock.wrap(prior, name, label)
    rows = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(repeats + 1):  # the first run warms up
        clock.totals = {}
        with clock("sds"):
            result = sds(wave, prior.sample_rate, progress=0.5)
        with clock("backward"):
            result.loss.backward()
        wave.grad = None
        t = dict(clock.totals)
        t["spectral"] = t["sds"] - t["encode"] - t["denoise"] - t["decode"]
        t["total"] = t["sds"] + t["backward"]
        if i:
            rows.append(t)
    for name in ("encode", "denoise", "decode"):
        delattr(prior, name)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}, peak_memory_gib(device)


def time_pipeline(pipe, prior, duration_s: float, steps: int, repeats: int, guidance: float,
                  n_frames: int) -> tuple[dict, float]:
    """Median generation time, split into prompt encoding / DiT evaluations / decode (rest: scheduler etc.),
    with the DiT's window set to ``n_frames`` latent frames (restored afterwards)."""
    device = prior.device
    full_frames = int(pipe.transformer.config.sample_size)
    pipe.transformer.register_to_config(sample_size=int(n_frames))
    clock = Clock(device)
    clock.wrap(pipe, "encode_prompt", "text")
    clock.wrap(pipe.transformer, "forward", "dit")
    clock.wrap(pipe.vae, "decode", "decode")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = []
    for i in range(repeats + 1):
        clock.totals = {}
        with clock("gen"):
            pipe(PROMPT, audio_end_in_s=duration_s, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator(device).manual_seed(i), output_type="pt")
        if i:
            rows.append(dict(clock.totals))
    for obj, name in ((pipe, "encode_prompt"), (pipe.transformer, "forward"), (pipe.vae, "decode")):
        delattr(obj, name)
    pipe.transformer.register_to_config(sample_size=full_frames)
    return {k: statistics.median(r.get(k, 0.0) for r in rows) for k in ("gen", "text", "dit", "decode")}, \
        peak_memory_gib(device)


def time_once(device: torch.device, run) -> tuple[float, float]:
    """Wall time of one call of ``run()`` and the peak memory (CUDA: reset first)."""
    clock = Clock(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with clock("run"):
        run()
    return clock.totals["run"], peak_memory_gib(device)


def time_preset(prior, steps: int) -> tuple[float, float, float]:
    """Wall time, peak memory and clip length of ``steps`` prompt-to-preset steps (FM, 4 restarts,
    1.5 s or the prior's maximum if shorter)."""
    from sds_audio.synths import FMSynth
    from sds_audio.tasks.synthesize import SynthesisConfig, synthesize

    device = prior.device
    synth = FMSynth(sample_rate=int(prior.sample_rate), channels=int(prior.channels))
    duration_s = min(1.5, float(prior.max_duration_s))
    config = SynthesisConfig(steps=steps, restarts=4, duration_s=duration_s, judge_every=0, checkpoint_every=0)
    seconds, peak = time_once(device, lambda: synthesize(synth, PROMPT, prior, config, progress=False))
    return seconds, peak, duration_s


def time_separation(prior, steps: int) -> tuple[float, float, float]:
    """Wall time, peak memory and mixture length of a ``steps``-step two-prompt separation."""
    from sds_audio.tasks.separate import SeparationConfig, separate

    device = prior.device
    sr = int(prior.sample_rate)
    n = int(min(10.0, float(prior.max_duration_s)) * sr)
    g = torch.Generator().manual_seed(0)
    time_s = torch.arange(n) / sr
    tone = 0.3 * torch.sin(2 * math.pi * 110.0 * time_s) * torch.exp(-3.0 * (time_s % 2.0))
    bursts = 0.1 * torch.randn(n, generator=g) * (torch.sin(2 * math.pi * 8.0 * time_s) > 0.6)
    mixture = (tone + bursts).expand(int(prior.channels), n).clone()
    seconds, peak = time_once(device, lambda: separate(mixture, ["kick drum, bass", "noise hit"], prior,
                                                       SeparationConfig(steps=steps), sample_rate=sr, progress=False))
    return seconds, peak, n / sr


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--durations", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--windows", nargs="+", choices=("full", "clip"), default=["full", "clip"],
                        help="denoising windows to time (full: the prior's default)")
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--tiny", action="store_true", help="toy-sized models (smoke test of this script)")
    parser.add_argument("--preset-steps", type=int, default=0,
                        help="also time a prompt-to-FM-preset run of this many steps at this size (0: skip)")
    parser.add_argument("--separate-steps", type=int, default=0,
                        help="also time a two-prompt separation of a 10 s mixture, this many steps (0: skip)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]

    from diffusers import CosineDPMSolverMultistepScheduler, StableAudioPipeline
    from diffusers.utils import logging as diffusers_logging

    from sds_audio.priors.stable_audio import StableAudioOpenPrior

    diffusers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", module="torchsde")  # the pipeline's Brownian tree warns at its own endpoints
    t0 = time.perf_counter()
    components = build_components(tiny=args.tiny)
    prior = StableAudioOpenPrior(**components, device=device, dtype=dtype)
    priors = {"full": prior, "clip": StableAudioOpenPrior(**components, device=device, dtype=dtype, window="clip")}
    text_encoder = copy.deepcopy(prior.text_encoder).to(dtype)  # the pipeline runs T5 in the pipeline dtype
    scheduler = CosineDPMSolverMultistepScheduler(**{k: v for k, v in components["scheduler_config"].items()
                                                     if not k.startswith("_")})
    pipe = StableAudioPipeline(vae=prior.vae, text_encoder=text_encoder, projection_model=prior.projection_model,
                               tokenizer=prior.tokenizer, transformer=prior.transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    n_params = sum(p.numel() for m in (prior.vae, prior.transformer, prior.text_encoder, prior.projection_model)
                   for p in m.parameters())
    print(f"# device={device} dtype={str(dtype).removeprefix('torch.')} threads={torch.get_num_threads()} "
          f"repeats={args.repeats} guidance={args.guidance} params={n_params / 1e9:.2f}B "
          f"build={time.perf_counter() - t0:.0f}s", flush=True)
    header = ("dur_s", "k", "window", "frames", "encode", "denoise", "decode", "spectral", "backward", "sds_total",
              "pipe_text", "pipe_dit", "pipe_decode", "pipeline", "ratio", "sds_peak_GiB", "pipe_peak_GiB")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)
    totals: dict[tuple[float, int, str], float] = {}
    for duration in args.durations:
        for steps in args.steps:
            for window in args.windows:
                sds, sds_mem = time_sds(priors[window], duration, steps, args.repeats, args.guidance)
                n_clip = prior.latent_length(int(round(duration * prior.sample_rate)))
                n_frames = n_clip + priors[window].window.n_pad(n_clip)
                gen, gen_mem = time_pipeline(pipe, prior, duration, steps, args.repeats, args.guidance, n_frames)
                totals[duration, steps, window] = sds["total"]
                cells = [f"{duration:g}", str(steps), window, str(n_frames)]
                cells += [f"{sds[k]:.3f}" for k in ("encode", "denoise", "decode", "spectral", "backward", "total")]
                cells += [f"{gen[k]:.3f}" for k in ("text", "dit", "decode", "gen")]
                cells += [f"{sds['total'] / gen['gen']:.2f}", f"{sds_mem:.2f}", f"{gen_mem:.2f}"]
                print("| " + " | ".join(cells) + " |", flush=True)
    print("# times in seconds (medians); frames = latent frames the DiT denoises; ratio = sds_total / pipeline "
          "on the same frames; goal ratio <= 1.3", flush=True)
    if set(args.windows) == {"full", "clip"}:
        print("\n| dur_s | k | sds_total full / clip |\n|---|---|---|")
        for duration in args.durations:
            for steps in args.steps:
                ratio = totals[duration, steps, "full"] / totals[duration, steps, "clip"]
                print(f"| {duration:g} | {steps} | {ratio:.2f} |", flush=True)
    if args.preset_steps:
        seconds, peak, duration_s = time_preset(prior, args.preset_steps)
        print(f"# prompt to FM preset ({PROMPT!r}, 4 restarts, {duration_s:g} s, k=4, guidance 5): "
              f"{args.preset_steps} steps in {seconds:.1f} s ({seconds / args.preset_steps:.3f} s / step), "
              f"peak {peak:.2f} GiB", flush=True)
    if args.separate_steps:
        seconds, peak, duration_s = time_separation(prior, args.separate_steps)
        print(f"# separation (2 prompts, {duration_s:g} s mixture, default options): {args.separate_steps} steps "
              f"in {seconds:.1f} s, peak {peak:.2f} GiB", flush=True)


if __name__ == "__main__":
    sys.exit(main())

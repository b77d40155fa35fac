"""Codec size and CPU speed: parameters, encode / decode time of a clip, training-step time.

Usage::

    python benchmarks/codec_speed.py [--weights codec.safetensors] [--seconds 1.5] [--threads 1 2]
                                     [--batch 1] [--precision float32 bfloat16] [--repeats 20]
                                     [--train-step] [--corpus DIR]

``--precision bfloat16`` runs the codec under CPU bfloat16 autocast (what
``EmbeddedPrior(codec_precision=...)`` does); with ``--corpus`` the script also
prints how far the bfloat16 encode / decode land from float32 on 16 held-out
corpus clips.

Prints medians and minima of the wall-clock time in milliseconds, and the
minimum process CPU time (with one thread on a shared, loaded machine the CPU
time is the best estimate of the uncontended single-core wall time; with more
threads it also counts the threads' spinning and is only a cost figure).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time
from pathlib import Path

import torch

from sds_audio.codec import Codec, CodecConfig, ReconstructionLoss, load_codec


def _time(fn, repeats: int) -> tuple[float, float, float]:
    """(median wall ms, min wall ms, min process CPU ms) over ``repeats`` calls after one warm-up."""
    fn()
    times, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times) * 1e3, min(times) * 1e3, min(cpu) * 1e3


def _precision(name: str) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if name == "bfloat16" else contextlib.nullcontext()


def _log_spectral_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean |log |STFT(a)| - log |STFT(b)|| (1024-point Hann window, hop 256)."""
    window = torch.hann_window(1024)
    spec = [torch.stft(x.reshape(-1, x.shape[-1]), 1024, 256, window=window, return_complex=True).abs()
            for x in (a, b)]
    n = min(s.shape[-1] for s in spec)
    return float((torch.log(spec[0][..., :n] + 1e-5) - torch.log(spec[1][..., :n] + 1e-5)).abs().mean())


def _compare_precisions(codec, corpus: Path, seconds: float) -> None:
    """How far bfloat16 autocast moves the codec's latents and output, on 16 held-out clips."""
    from sds_audio.audio_io import load_audio
    from sds_audio.corpus.dataset import read_manifest

    rows = random.Random(0).sample([r for r in read_manifest(corpus) if r["split"] == "heldout"], 16)
    n = int(seconds * codec.config.sample_rate)
    clips = []
    for row in rows:
        audio = load_audio(corpus / row["path"], codec.config.sample_rate, codec.config.channels,
                           allow_silent=True)[0][0, :, :n]
        clips.append(torch.nn.functional.pad(audio, (0, n - audio.shape[-1])))
    x = torch.stack(clips)
    with torch.inference_mode():
        z32 = codec.encode(x)
        y32 = codec.decode(z32)
        with _precision("bfloat16"):
            z16 = codec.encode(x).float()
            y16 = codec.decode(z32).float()
    print(f"\nbfloat16 vs float32 on 16 held-out corpus clips of {seconds:g} s")
    print(f"{'quantity':<46} | value")
    print(f"{'latents: relative L2 difference':<46} | {float((z16 - z32).norm() / z32.norm()):.4f}")
    print(f"{'decoded audio: relative L2 difference':<46} | {float((y16 - y32).norm() / y32.norm()):.4f}")
    print(f"{'decoded audio: log-spectral distance bf16/fp32':<46} | {_log_spectral_distance(y16, y32):.4f}")
    print(f"{'float32 reconstruction vs original: same':<46} | {_log_spectral_distance(y32, x):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="codec .safetensors (default: a fresh CodecConfig())")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--train-step", action="store_true", help="also time one training step (batch 8 x 1 s)")
    parser.add_argument("--corpus", default=None, help="corpus directory: compare bfloat16 with float32 on its clips")
    args = parser.parse_args()

    torch.manual_seed(0)
    codec = load_codec(args.weights) if args.weights else Codec(CodecConfig()).eval()
    codec.requires_grad_(False)
    cfg = codec.config
    n_params = sum(p.numel() for p in codec.parameters())
    n_enc = sum(p.numel() for p in codec.encoder.parameters())
    n_dec = sum(p.numel() for p in codec.decoder.parameters())
    print(f"codec: {n_params / 1e6:.3f} M parameters (encoder {n_enc / 1e6:.3f} M, decoder {n_dec / 1e6:.3f} M), "
          f"fp16 size {n_params * 2 / 2**20:.2f} MiB")
    print(f"hop {cfg.hop_length} samples -> {cfg.latent_rate:.2f} latent frames/s x {cfg.latent_channels} channels; "
          f"compression {cfg.compression_factor:.1f}x ({cfg.sample_rate} samples/s -> "
          f"{cfg.latent_rate * cfg.latent_channels:.0f} latent values/s)")
    audio = torch.randn(args.batch, cfg.channels, int(args.seconds * cfg.sample_rate)) * 0.3
    print(f"\n{args.seconds:g} s clip, batch {args.batch}, ms: wall median / wall min / CPU min "
          f"({args.repeats} runs)")
    print(f"{'threads':>7} | {'precision':>9} | {'encode':>20} | {'decode':>20} | {'encode+decode':>20} | "
          f"{'decode+backward':>20}")
    for n in args.threads:
        torch.set_num_threads(n)
        for precision in args.precision:
            with _precision(precision), torch.inference_mode():
                z = codec.encode(audio)
                enc = _time(lambda: codec.encode(audio), args.repeats)
                dec = _time(lambda: codec.decode(z), args.repeats)
                both = _time(lambda: codec.decode(codec.encode(audio)), args.repeats)
            zg = z.float().clone().requires_grad_(True)
            with _precision(precision):
                grad = _time(lambda: codec.decode(zg).float().square().sum().backward(), max(3, args.repeats // 4))
            print(f"{n:>7} | {precision:>9} | " + " | ".join(f"{m:6.1f} / {lo:5.1f} / {c:5.1f}"
                                                          for m, lo, c in (enc, dec, both, grad)))
    if args.corpus:
        _compare_precisions(codec, Path(args.corpus), args.seconds)
    if args.train_step:
        codec.train().requires_grad_(True)
        loss_fn = ReconstructionLoss(cfg.sample_rate)
        opt = torch.optim.AdamW(codec.parameters(), lr=1e-4)
        batch = torch.randn(8, cfg.channels, cfg.hop_length * (cfg.sample_rate // cfg.hop_length + 1)) * 0.3

        def step() -> None:
            out = codec(batch)
            loss = loss_fn(out.audio, batch)["total"] + 1e-4 * out.kl
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"\ntraining step, batch 8 x {batch.shape[-1] / cfg.sample_rate:.2f} s, no discriminator "
              "(ms: wall median / wall min / CPU min)")
        for n in args.threads:
            torch.set_num_threads(n)
            med, lo, c = _time(step, max(3, args.repeats // 4))
            print(f"{n:>7} threads | {med:8.1f} / {lo:8.1f} / {c:8.1f}")


if __name__ == "__main__":
    main()

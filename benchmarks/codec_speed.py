"""Codec size and CPU speed: parameters, encode / decode time of a clip, training-step time.

Usage::

    python benchmarks/codec_speed.py [--weights codec.safetensors] [--seconds 1.5] [--threads 1 2]
                                     [--repeats 20] [--train-step]

Prints medians and minima of the wall-clock time in milliseconds, and the
minimum process CPU time (with one thread on a shared, loaded machine the CPU
time is the best estimate of the uncontended single-core wall time; with more
threads it also counts the threads' spinning and is only a cost figure).
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="codec .safetensors (default: a fresh CodecConfig())")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-step", action="store_true", help="also time one training step (batch 8 x 1 s)")
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
    audio = torch.randn(1, cfg.channels, int(args.seconds * cfg.sample_rate)) * 0.3
    print(f"\n{args.seconds:g} s clip, batch 1, ms: wall median / wall min / CPU min ({args.repeats} runs)")
    print(f"{'threads':>7} | {'encode':>20} | {'decode':>20} | {'encode+decode':>20} | {'decode+backward':>20}")
    for n in args.threads:
        torch.set_num_threads(n)
        with torch.inference_mode():
            z = codec.encode(audio)
            enc = _time(lambda: codec.encode(audio), args.repeats)
            dec = _time(lambda: codec.decode(z), args.repeats)
            both = _time(lambda: codec.decode(codec.encode(audio)), args.repeats)
        zg = z.clone().requires_grad_(True)
        grad = _time(lambda: codec.decode(zg).square().sum().backward(), max(3, args.repeats // 4))
        print(f"{n:>7} | " + " | ".join(f"{m:6.1f} / {lo:5.1f} / {c:5.1f}" for m, lo, c in (enc, dec, both, grad)))
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

"""Speed of the flow DiT and of the embedded prior's SDS step on the CPU (prints tables of medians).

    python benchmarks/flow_speed.py [--threads 2] [--repeats 30]

Rows: DiT forward on a CFG batch (2 x a 1.5 s clip) for a few widths / depths /
patch sizes (the default FlowConfig is width 256, depth 6, 4 heads, patch 2),
then the embedded prior's encode + 4-step guided denoise + decode of a 1.5 s
clip with randomly initialised default-size codec and flow model (speed does
not depend on the weights' values). The "cpu ms" column is process CPU time:
on a machine shared with other jobs, run with --threads 1 and read it as the
cost on one idle core.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sds_audio.codec import Codec, CodecConfig
from sds_audio.flow import FlowCondition, FlowConfig, FlowModel


def timed(fn, repeats: int) -> tuple[float, float, float]:
    """Median and minimum wall time and median process CPU time, in milliseconds (after 3 warm-up calls).

    On a machine shared with other jobs the wall time is inflated; with one
    thread the CPU time is what the call costs on an idle core.
    """
    for _ in range(3):
        fn()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(times), min(times), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec_config = CodecConfig()
    frames = -(-round(args.seconds * codec_config.sample_rate) // codec_config.hop_length)
    print(f"threads={args.threads}  clip={args.seconds} s = {frames} latent frames (hop {codec_config.hop_length})")
    print(f"{'width':>5} {'depth':>5} {'heads':>5} {'patch':>5} {'tokens':>6} {'params (M)':>10} {'fp16 MB':>7} "
          f"{'fwd B=2 median ms':>17} {'min ms':>7} {'cpu ms':>7}")
    cond = FlowCondition.from_text(torch.randn(1, 8, 384), torch.ones(1, 8, dtype=torch.bool),
                                   torch.randn(1, 384), args.seconds)
    both = FlowCondition.cat([cond, FlowCondition.unconditional(1, args.seconds, 384)])
    x = torch.randn(2, codec_config.latent_channels, frames)
    s = torch.full((2,), 0.5)
    for width, depth, heads, patch in [(192, 6, 3, 1), (256, 6, 4, 1), (256, 6, 4, 2), (256, 8, 4, 2),
                                       (320, 6, 5, 2)]:
        model = FlowModel(FlowConfig(width=width, depth=depth, heads=heads, patch_size=patch)).eval()
        with torch.inference_mode():
            med, low, cpu = timed(lambda: model(x, s, both), args.repeats)
        print(f"{width:>5} {depth:>5} {heads:>5} {patch:>5} {-(-frames // patch):>6} {model.n_params / 1e6:>10.2f} "
              f"{model.n_params * 2 / 1e6:>7.1f} {med:>17.1f} {low:>7.1f} {cpu:>7.1f}")

    from sds_audio.priors.embedded import EmbeddedPrior

    prior = EmbeddedPrior(Codec(codec_config), FlowModel(FlowConfig()))
    audio = torch.randn(1, 1, round(args.seconds * codec_config.sample_rate)) * 0.1
    c = prior.condition("kick drum, punchy, short")
    t = torch.tensor([0.6])
    noise = torch.randn(1, codec_config.latent_channels, frames)
    with torch.inference_mode():
        rows = [("codec encode", lambda: prior.encode(audio)),
                ("4-step denoise, CFG", lambda: prior.denoise(noise, t, c, 4.0, steps=4)),
                ("codec decode", lambda: prior.decode(noise)),
                ("encode + 4-step CFG + decode",
                 lambda: prior.decode(prior.denoise(prior.add_noise(prior.encode(audio), noise, t), t, c, 4.0, 4)))]
        print(f"\nembedded prior, default sizes, {args.seconds} s clip")
        print(f"{'stage':<30} {'median ms':>9} {'min ms':>7} {'cpu ms':>7}")
        for name, fn in rows:
            med, low, cpu = timed(fn, args.repeats)
            print(f"{name:<30} {med:>9.1f} {low:>7.1f} {cpu:>7.1f}")


if __name__ == "__main__":
    main()

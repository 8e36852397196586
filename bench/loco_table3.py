"""FLOPs and parameters of LoCo's Table 3 variants (arXiv 2409.07967) at the paper's size.

Builds every run of ``configs/papers/loco_table3.yaml`` (base, +GB, +CDP, +GB+LCC, Ours) with
UnAV-100's 100 classes and the input widths of the chosen features (I3D-VGGish: 2048 visual,
128 audio; ONE-PEACE: 1536 and 1536, the features of the paper's ablations), and counts for
one video of ``--length`` snippets:

* FLOPs of one forward pass plus, for the variants with LCC, its loss (the similarity matrix
  of the video's snippets; the projection heads are part of the forward pass), as a training
  step computes them: ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
  convolutions, 2 FLOPs per multiply-add) plus the windowed products of the sliding-window
  attention, which it does not see (``SlidingWindowCrossAttention.attention_flops``).
  Softmax, normalisation, activations and the interpolation are not counted. GMACs (half the
  FLOPs) are printed too, since papers often report multiply-adds as FLOPs.
* Parameters in millions; without LCC its projection heads do not exist.

The paper's maximum sequence length is lost from the text at hand; the default 256 is
UniAV's for UnAV-100 (arXiv 2404.03179, whose features and setup LoCo follows; the UnAV
baseline crops to 224).

    python bench/loco_table3.py [--features one_peace|i3d_vggish] [--length 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from models import build_detector
from models.loco.cdp import SlidingWindowCrossAttention

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "papers" / "loco_table3.yaml"
FEATURES = {  # input widths of the released UnAV-100 features
    "i3d_vggish": {"visual": 2048, "audio": 128},
    "one_peace": {"visual": 1536, "audio": 1536},
}
ROWS = {  # run name -> Table 3 row
    "loco_t3_base": "base",
    "loco_t3_base_gb": "base+GB",
    "loco_t3_base_cdp": "base+CDP",
    "loco_t3_base_gb_lcc": "base+GB+LCC",
    "loco_t3_base_lcc_cdp": "Ours (base+LCC+CDP)",
}
NUM_CLASSES = 100  # UnAV-100


def count(detector: nn.Module, length: int, input_dims: dict[str, int]) -> float:
    """FLOPs of one forward pass (and the LCC loss, when the model has LCC) for one video."""
    torch.manual_seed(0)
    inputs = {m: torch.randn(1, length, d) for m, d in input_dims.items()}
    mask = torch.ones(1, length, dtype=torch.bool)
    windowed = []

    def add_windowed(module: nn.Module, args: tuple, _output: torch.Tensor) -> None:
        windowed.append(module.attention_flops(args[0].shape[0], args[0].shape[-1]))

    hooks = [
        module.register_forward_hook(add_windowed)
        for module in detector.modules()
        if isinstance(module, SlidingWindowCrossAttention)
    ]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        output = detector(inputs, mask)
        if detector.lcc is not None:
            detector.lcc(output.audio_embed, output.visual_embed, output.input_mask)
    for hook in hooks:
        hook.remove()
    return counter.get_total_flops() + sum(windowed)


def main() -> None:
    """Parse arguments, build the Table 3 variants, print FLOPs and parameters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", choices=sorted(FEATURES), default="one_peace")
    parser.add_argument("--length", type=int, default=256, help="snippets per video")
    args = parser.parse_args()
    runs = yaml.safe_load(CONFIG.read_text())["runs"]
    input_dims = FEATURES[args.features]
    print(
        f"LoCo Table 3 at the paper's size: {args.features} features "
        f"(visual {input_dims['visual']}, audio {input_dims['audio']}), {NUM_CLASSES} classes, "
        f"one video of {args.length} snippets"
    )
    print("| row | run | GFLOPs | GMACs | parameters (M) |")
    print("|---|---|---|---|---|")
    for name, row in ROWS.items():
        model = {**runs[name]["model"], "input_dims": input_dims, "num_classes": NUM_CLASSES}
        detector = build_detector(model).eval()
        if args.length % detector.max_stride != 0:
            parser.error(f"--length must be a multiple of the largest stride {detector.max_stride}")
        flops = count(detector, args.length, input_dims)
        params = sum(p.numel() for p in detector.parameters())
        print(f"| {row} | {name} | {flops / 1e9:.2f} | {flops / 2e9:.2f} | {params / 1e6:.2f} |")


if __name__ == "__main__":
    main()

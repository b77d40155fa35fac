"""Flow-matching text-to-audio model over codec latents (the embedded prior's generator).

- :class:`FlowConfig` / :class:`FlowModel` (a DiT with adaLN-Zero, rotary
  self-attention, cross-attention to MiniLM text tokens (optional) and the pooled
  sentence embedding in adaLN, duration conditioning)
- :mod:`~sds_audio.flow.path`: the linear conditional-flow-matching path and loss
- :mod:`~sds_audio.flow.samplers`: Euler, midpoint, sway-sampled time grids
- :mod:`~sds_audio.flow.guidance`: batched classifier-free guidance
- :func:`save_flow` / :func:`load_flow`: ``.safetensors`` with the config in the metadata
- :func:`train_flow`, :func:`generate`
"""

from .condition import FlowCondition
from .config import FlowConfig
from .dit import FlowModel
from .generate import generate
from .train import train_flow
from .weights import load_flow, save_flow

__version__ = "0.1.0"

__all__ = ["FlowCondition", "FlowConfig", "FlowModel", "generate", "load_flow", "save_flow", "train_flow"]

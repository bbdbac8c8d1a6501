"""The location model: p(box | image, class) as four coordinate tokens.

``LocationModelConfig`` (presets "tiny", "synthetic", "base"), ``LocationModel`` (a transformers
``PreTrainedModel`` with ``sample`` / ``score`` / ``heatmap``), ``BoxSamples``, the decoding
constraints, and placement heatmaps (``placement_heatmap``, ``heatmap_overlay``).
Both classes are registered with ``AutoConfig`` / ``AutoModel`` under model type "locinsert" (by
``checkpoint_io.CheckpointMixin``, as every model class of the library).
"""

from .config import PRESETS, LocationModelConfig
from .constraints import BoxConstraints
from .heatmap import boxes_heatmap, heatmap_overlay, placement_heatmap
from .model import BoxSamples, LocationModel, LocationModelOutput

__all__ = ["LocationModelConfig", "LocationModel", "BoxSamples", "LocationModelOutput", "BoxConstraints", "PRESETS",
           "placement_heatmap", "boxes_heatmap", "heatmap_overlay"]

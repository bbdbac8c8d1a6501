"""Loading a LoRA into a diffusers pipeline, and refusing one that attaches to nothing.

``pipe.load_lora_weights`` only *warns* when a file's keys match no module ("No LoRA keys
associated to UNet2DConditionModel found with the prefix='unet'"): a LoRA saved without the
``unet.`` prefix the pipeline expects (e.g. a ``transformer.`` LoRA of a DiT model), then silently
leaves the base model running. Here that
is an error: after loading, ``pipe.get_list_adapters()`` must list the adapter. A LoRA whose
shapes do not fit the UNet (another base model) is an error too, naming the file.
"""

from __future__ import annotations

import os

__all__ = ["load_lora", "LORA_WEIGHT_NAME"]

#: The file ``save_lora_weights`` writes (safetensors).
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def load_lora(pipe, lora: str | os.PathLike, *, adapter_name: str = "removal", scale: float = 1.0,
              weight_name: str | None = None) -> str:
    """Load ``lora`` (a folder, a ``.safetensors`` file or a hub id) into ``pipe`` as ``adapter_name``.

    Returns the adapter name. Raises ``FileNotFoundError`` for a local path that does not exist,
    ``ValueError`` if the LoRA does not fit the pipeline or attaches to no module.
    """
    if not hasattr(pipe, "load_lora_weights"):
        raise TypeError(f"{type(pipe).__name__} cannot load LoRA weights (no load_lora_weights)")
    source = os.fspath(lora)
    kwargs = {}
    if os.path.isfile(source):
        source, kwargs["weight_name"] = os.path.dirname(source) or ".", os.path.basename(source)
    elif os.path.isdir(source):
        kwargs["weight_name"] = weight_name or LORA_WEIGHT_NAME
        if not os.path.isfile(os.path.join(source, kwargs["weight_name"])):
            raise FileNotFoundError(f"LoRA folder {source} has no {kwargs['weight_name']}")
    elif source.endswith(".safetensors") or os.sep in source and not _looks_like_hub_id(source):
        raise FileNotFoundError(f"LoRA file not found: {source}")
    elif weight_name:
        kwargs["weight_name"] = weight_name
    if adapter_name in _adapters(pipe):
        raise ValueError(f"the pipeline already has an adapter named {adapter_name!r}; pick another adapter_name")
    try:
        pipe.load_lora_weights(source, adapter_name=adapter_name, **kwargs)
    except (RuntimeError, KeyError, ValueError) as e:     # size mismatch, modules the UNet does not have
        raise ValueError(f"LoRA {lora} does not fit this pipeline's {type(pipe.unet).__name__}: {e}") from e
    if adapter_name not in _adapters(pipe):
        raise ValueError(f"LoRA {lora} attached to no module of the pipeline (no key matched the 'unet.' "
                         "prefix): it was saved for another kind of model; save LoRAs with "
                         "save_lora_weights(unet_lora_layers=...)")
    if scale != 1.0:
        pipe.set_adapters([adapter_name], adapter_weights=[float(scale)])
    return adapter_name


def _adapters(pipe) -> set[str]:
    try:
        listed = pipe.get_list_adapters()
    except (ValueError, AttributeError):     # peft missing, or no adapter yet
        return set()
    return {name for names in listed.values() for name in names}


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))

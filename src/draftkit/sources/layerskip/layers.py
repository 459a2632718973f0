"""Where the sub-layers of a Hugging Face causal LM are, per architecture.

Layer skipping runs the target's own modules in an explicit forward (see
:mod:`.forward`), so it must know, for each decoder layer, which module is the
attention sub-block, which is the MLP, which norms feed them and how the residual
stream combines them. That knowledge is a small table of attribute names per
``config.model_type`` (:data:`ARCHITECTURES`), read from the ``transformers``
modelling code of each family. Everything else is generic: :func:`model_layout`
resolves the names on a model once and returns plain module references.

Families fall into two residual schemes:

* *sequential* (Llama, Qwen2, Mistral, GPT-2, GPT-NeoX with
  ``use_parallel_residual=False``): ``h = h + attn(norm1(h)); h = h + mlp(norm2(h))``;
* *parallel* (GPT-NeoX by default, Phi): both sub-blocks read the layer's input,
  ``h = h + attn(norm1(h)) + mlp(norm2(h))``; Phi feeds both from one norm.

Models of other families are not guessed at blindly: a wrong guess (a missing
embedding scale, an extra norm) would not change the output, verification is
lossless, but it would silently give a useless draft. :mod:`.discover` tries the
Llama layout on them and keeps it only if, with nothing skipped, it reproduces
the model's own logits; otherwise they are refused with
:class:`~draftkit.errors.UnsupportedModelError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import UnsupportedModelError

__all__ = ["ArchSpec", "LayerBlocks", "ModelLayout", "ARCHITECTURES", "LLAMA_LAYOUT", "model_layout", "supported_architectures"]


@dataclass(frozen=True)
class ArchSpec:
    """Attribute names of one model family (``None`` = the family has no such part)."""

    base: str  #: attribute of the ``*ForCausalLM`` holding the decoder stack
    embed: str  #: token embedding, on ``base``
    layers: str  #: the ``nn.ModuleList`` of decoder layers, on ``base``
    final_norm: str  #: norm applied before the LM head, on ``base``
    attention: str  #: attention sub-block, on each layer
    attention_norm: str  #: norm feeding the attention, on each layer
    mlp: str  #: MLP sub-block, on each layer
    #: norm feeding the MLP, on each layer; ``None``: the MLP reads the attention norm's output
    mlp_norm: str | None
    positions: str | None = None  #: learned absolute position embedding, on ``base`` (GPT-2)
    rotary: str | None = None  #: rotary embedding module, on ``base``
    #: keyword under which the attention module takes the KV cache
    cache_kwarg: str = "past_key_values"
    #: whether the layer uses the parallel residual scheme, from the config
    parallel: Callable[[Any], bool] = lambda config: False
    #: parallel scheme only: the order the branch outputs are summed in (matches the
    #: family's own code, so an empty skip set reproduces the target bit for bit)
    parallel_order: tuple[str, str] = ("attention", "mlp")
    #: a config check returning a reason the model cannot be run, or ``None``
    refuse: Callable[[Any], str | None] = lambda config: None


_LLAMA_LIKE = ArchSpec(
    base="model",
    embed="embed_tokens",
    layers="layers",
    final_norm="norm",
    attention="self_attn",
    attention_norm="input_layernorm",
    mlp="mlp",
    mlp_norm="post_attention_layernorm",
    rotary="rotary_emb",
)


def _gpt2_refuse(config: Any) -> str | None:
    if getattr(config, "add_cross_attention", False):
        return "GPT-2 models with cross-attention (add_cross_attention=True) are encoder-decoder style"
    return None


#: The model families layer skipping knows, by ``config.model_type``.
ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "phi": ArchSpec(
        base="model",
        embed="embed_tokens",
        layers="layers",
        final_norm="final_layernorm",
        attention="self_attn",
        attention_norm="input_layernorm",
        mlp="mlp",
        mlp_norm=None,
        rotary="rotary_emb",
        parallel=lambda config: True,
        parallel_order=("attention", "mlp"),
    ),
    "gpt2": ArchSpec(
        base="transformer",
        embed="wte",
        positions="wpe",
        layers="h",
        final_norm="ln_f",
        attention="attn",
        attention_norm="ln_1",
        mlp="mlp",
        mlp_norm="ln_2",
        refuse=_gpt2_refuse,
    ),
    "gpt_neox": ArchSpec(
        base="gpt_neox",
        embed="embed_in",
        layers="layers",
        final_norm="final_layer_norm",
        attention="attention",
        attention_norm="input_layernorm",
        mlp="mlp",
        mlp_norm="post_attention_layernorm",
        rotary="rotary_emb",
        cache_kwarg="layer_past",
        parallel=lambda config: bool(getattr(config, "use_parallel_residual", True)),
        parallel_order=("mlp", "attention"),
    ),
}


def supported_architectures() -> tuple[str, ...]:
    """``config.model_type`` values layer skipping can run."""
    return tuple(sorted(ARCHITECTURES))


@dataclass(frozen=True, eq=False)
class LayerBlocks:
    """The modules of one decoder layer."""

    attention: Any  #: called as ``attention(hidden_states=..., attention_mask=..., <cache>=...)``
    attention_norm: Any
    mlp: Any
    mlp_norm: Any | None  #: ``None``: the MLP reads ``attention_norm``'s output (Phi)


@dataclass(frozen=True, eq=False)
class ModelLayout:
    """Resolved module references of a model, enough to run any subset of its sub-layers."""

    architecture: str  #: ``config.model_type``
    embed: Any
    positions: Any | None
    rotary: Any | None
    layers: tuple[LayerBlocks, ...]
    final_norm: Any
    head: Any  #: the LM head (``model.get_output_embeddings()``)
    parallel: bool
    parallel_order: tuple[str, str]
    cache_kwarg: str

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def _get(obj: Any, name: str, where: str, arch: str) -> Any:
    value = getattr(obj, name, None)
    if value is None:
        raise UnsupportedModelError(
            f"layer skipping cannot find `{where}.{name}` on this {arch} model "
            f"({type(obj).__name__} has no attribute {name!r}); the model does not have the "
            f"standard transformers {arch} layout. Use another draft source (e.g. source='pld')"
        )
    return value


#: The layout tried on families missing from :data:`ARCHITECTURES` (see :mod:`.discover`).
LLAMA_LAYOUT = _LLAMA_LIKE


def model_layout(model: Any, spec: ArchSpec | None = None) -> ModelLayout:
    """Resolve the sub-layers of ``model``; refuse families layer skipping does not know.

    ``spec`` overrides the family table (used to try a known layout on an
    unknown family; :func:`draftkit.sources.layerskip.discover.find_layout`
    then checks the result on the model). Raises :class:`UnsupportedModelError`
    naming the unknown ``model_type`` or the missing attribute.
    """
    config = getattr(model, "config", None)
    arch = str(getattr(config, "model_type", "") or "")
    spec = spec if spec is not None else ARCHITECTURES.get(arch)
    if spec is None:
        raise UnsupportedModelError(
            f"layer skipping does not know the layer layout of model type {arch or type(model).__name__!r}; "
            f"supported: {', '.join(supported_architectures())}. Use another draft source "
            "(e.g. source='pld'), or add an ArchSpec for this family to "
            "draftkit.sources.layerskip.layers.ARCHITECTURES"
        )
    reason = spec.refuse(config)
    if reason:
        raise UnsupportedModelError(f"layer skipping cannot run this model: {reason}")
    base = _get(model, spec.base, "model", arch)
    embed = _get(base, spec.embed, spec.base, arch)
    modules = _get(base, spec.layers, spec.base, arch)
    final_norm = _get(base, spec.final_norm, spec.base, arch)
    positions = _get(base, spec.positions, spec.base, arch) if spec.positions else None
    rotary = _get(base, spec.rotary, spec.base, arch) if spec.rotary else None
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is None:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no language-modelling head; load the model with "
            "AutoModelForCausalLM.from_pretrained(path)"
        )
    try:
        layer_list = list(modules)
    except TypeError:
        raise UnsupportedModelError(
            f"`{spec.base}.{spec.layers}` of this {arch} model is a {type(modules).__name__}, "
            "not a list of decoder layers"
        ) from None
    if not layer_list:
        raise UnsupportedModelError(f"this {arch} model has no decoder layers at `{spec.base}.{spec.layers}`")
    blocks = []
    for i, layer in enumerate(layer_list):
        where = f"{spec.base}.{spec.layers}[{i}]"
        attention = _get(layer, spec.attention, where, arch)
        layer_idx = getattr(attention, "layer_idx", i)
        if layer_idx is not None and int(layer_idx) != i:
            raise UnsupportedModelError(
                f"`{where}.{spec.attention}` writes KV-cache slot {layer_idx}, not {i}; layer skipping "
                "needs one cache slot per decoder layer in order"
            )
        blocks.append(
            LayerBlocks(
                attention=attention,
                attention_norm=_get(layer, spec.attention_norm, where, arch),
                mlp=_get(layer, spec.mlp, where, arch),
                mlp_norm=_get(layer, spec.mlp_norm, where, arch) if spec.mlp_norm else None,
            )
        )
    return ModelLayout(
        architecture=arch,
        embed=embed,
        positions=positions,
        rotary=rotary,
        layers=tuple(blocks),
        final_norm=final_norm,
        head=head,
        parallel=bool(spec.parallel(config)),
        parallel_order=spec.parallel_order,
        cache_kwarg=spec.cache_kwarg,
    )

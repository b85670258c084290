"""Model configurations as data: `reference` (the paper's), `lite`, and `tiny` (for tests)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from lagchand_edge.errors import UserError


@dataclass(frozen=True)
class Stage:
    channels: int
    stride: int
    mv2_blocks: int = 1
    dim: int = 0  # transformer width; 0 = no MobileViTv3 block in this stage
    ffn: int = 0
    depth: int = 0


@dataclass(frozen=True)
class EncoderConfig:
    """MobileViTv3-XXS as published (DESIGN.md §0): strides 2, 4, 8, 16, 32 after the stem."""

    stem: int = 16
    expand: int = 2
    attention: str = "linear"
    stages: tuple[Stage, ...] = (
        Stage(16, 1),
        Stage(24, 2, mv2_blocks=3),
        Stage(64, 2, dim=64, ffn=128, depth=2),
        Stage(80, 2, dim=80, ffn=160, depth=4),
        Stage(128, 2, dim=96, ffn=192, depth=3),
    )


@dataclass(frozen=True)
class LAGCHandConfig:
    name: str
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder_channels: tuple[int, int, int, int] = (128, 96, 64, 32)  # at 8, 16, 32, 64 px
    global_dim: int = 256
    hand_dim: int = 256
    graph_channels: tuple[int, int, int] = (128, 96, 64)  # coarse -> fine graph levels
    gcn_layers: int = 2
    graph_heads: int = 4
    image_grid: int = 8  # image tokens per graph level: image_grid x image_grid
    image_size: int = 256
    heatmap_size: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


def _tiny() -> LAGCHandConfig:
    encoder = EncoderConfig(
        stem=8,
        stages=(Stage(8, 1), Stage(12, 2), Stage(16, 2, dim=16, ffn=32, depth=1), Stage(24, 2, dim=24, ffn=48, depth=1),
                Stage(32, 2, dim=32, ffn=64, depth=1)),
    )
    return LAGCHandConfig("tiny", encoder, (32, 24, 16, 8), 64, 64, (32, 24, 16), 1, 2)


CONFIGS: dict[str, LAGCHandConfig] = {
    "reference": LAGCHandConfig("reference"),
    "reference-mhsa": LAGCHandConfig("reference-mhsa", EncoderConfig(attention="mhsa")),
    "lite": LAGCHandConfig("lite", graph_channels=(96, 64, 48), decoder_channels=(96, 64, 48, 24), gcn_layers=1),
    "tiny": _tiny(),
}


def get_config(name: str, **overrides) -> LAGCHandConfig:
    """A named configuration, optionally with fields replaced."""
    if name not in CONFIGS:
        raise UserError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    return replace(CONFIGS[name], **overrides) if overrides else CONFIGS[name]

"""Parameter and MAC counts per paper module (Table 2 shape), from torch's FLOP counter.

Like fvcore and thop, only convolutions, linear layers and matrix products are counted;
MACs = counted FLOPs / 2. Elementwise work (norms, activations, softmax) is not included.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from lagchand_edge.model.lagchand import LAGCHand

PAPER_MODULES = {"encoder": "Linear Attention Encoder", "compact": "Compact Single Hand Heatmap", "graph": "Linear Graph"}
PAPER_GMACS = 0.81


def count_model(model: LAGCHand, with_heatmaps: bool = True) -> dict:
    """Per-module params / MACs / FLOPs for one 256x256 image, plus the total; `with_heatmaps=False`
    counts what is deployed (no training heatmap stage)."""
    model = model.eval()
    size = model.cfg.image_size
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size), with_heatmaps=with_heatmaps)
    by_module = counter.get_flop_counts()
    rows, total_flops = [], 0
    for attr, title in PAPER_MODULES.items():
        key = next((k for k in by_module if k.endswith(f".{attr}") or k == attr), None)
        flops = int(sum(by_module.get(key, {}).values())) if key else 0
        params = sum(p.numel() for p in getattr(model, attr).parameters())
        rows.append({"module": title, "params": params, "macs": flops // 2, "flops": flops})
    total_flops = int(counter.get_total_flops())
    other_flops = total_flops - sum(r["flops"] for r in rows)
    other_params = sum(p.numel() for p in model.parameters()) - sum(r["params"] for r in rows)
    rows.append({"module": "heads + joint regressor", "params": other_params, "macs": other_flops // 2, "flops": other_flops})
    rows.append({"module": "total", "params": sum(r["params"] for r in rows), "macs": total_flops // 2, "flops": total_flops})
    return {"config": model.cfg.name, "image_size": size, "modules": rows, "paper_gmacs": PAPER_GMACS,
            "gmacs": total_flops / 2e9, "mac_convention": "fvcore/thop: conv, linear, matmul; FLOPs = 2 x MACs"}


def deployed_macs(model: LAGCHand) -> int:
    """MACs of what artifacts run: the deployed form (`model.deploy`), no training heatmap stage."""
    from lagchand_edge.model.deploy import deploy_form

    return count_model(deploy_form(model), with_heatmaps=False)["modules"][-1]["macs"]

"""CoreMLQuantizer's pattern graphs, traced once per process.

ExecuTorch's CoreMLQuantizer annotates a model by matching about 400 small pattern graphs
(conv/linear/binary op, with or without batch norm, times every activation) and traces each
one with `torch.export` on every `annotate` call (about 90 of the 140 s a tiny-config W8A8
conversion takes here). The patterns depend only on their arguments, so each is traced once
per process and handed out as a copy (the matcher rewrites the pattern graph it is given, so a
shared one would not survive its first use): a second W8A8 conversion in one process took 52 s
instead of 139, with the same program.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

#: the pattern getters of `executorch.backends.apple.coreml.quantizer._coreml_quantizer_utils`
#: (its annotators call them through the module, so replacing them there reaches every caller)
PATTERN_GETTERS = ("get_conv_pattern", "get_conv_bn_pattern", "get_linear_pattern", "get_linear_bn_pattern",
                   "get_binary_op_act_pattern")


def _traced_once(getter: Callable) -> Callable:
    cache: dict = {}

    @functools.wraps(getter)
    def pattern(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = getter(*args, **kwargs)
        return copy.deepcopy(cache[key])

    pattern.traced_once = True
    return pattern


def trace_patterns_once() -> None:
    """Make CoreMLQuantizer trace each pattern graph once per process (idempotent)."""
    from executorch.backends.apple.coreml.quantizer import _coreml_quantizer_utils as utils

    for name in PATTERN_GETTERS:
        getter = getattr(utils, name)
        if not getattr(getter, "traced_once", False):
            setattr(utils, name, _traced_once(getter))

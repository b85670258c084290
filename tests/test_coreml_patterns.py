"""CoreMLQuantizer's pattern graphs are traced once per process and handed out as copies."""

import torch


def test_each_pattern_is_traced_once_and_every_caller_gets_its_own_copy():
    from executorch.backends.apple.coreml.quantizer import _coreml_quantizer_utils as utils
    from torch.fx.passes.utils.matcher_with_name_node_map_utils import SubgraphMatcherWithNameNodeMap

    from converters.coreml.patterns import PATTERN_GETTERS, trace_patterns_once

    trace_patterns_once()
    trace_patterns_once()  # idempotent: one layer of caching, not two
    for name in PATTERN_GETTERS:
        assert getattr(utils, name).traced_once and not getattr(utils, name).__wrapped__.__dict__.get("traced_once")
    first = utils.get_binary_op_act_pattern(torch.add, torch.nn.functional.relu, False)
    code = first.code
    SubgraphMatcherWithNameNodeMap(first, ignore_literals=True)  # rewrites `first`'s outputs
    second = utils.get_binary_op_act_pattern(torch.add, torch.nn.functional.relu, False)
    assert second is not first and first.code != code and second.code == code
    assert utils.get_binary_op_act_pattern(torch.mul, torch.nn.functional.relu, False).code != code

"""coreml-sim: a reference interpreter for Core ML ML Programs, so CoreML artifacts are checked on Linux.

It parses the package's MIL program with coremltools' protobuf classes, reads weights with
coremltools' blob reader and executes every op in torch CPU (ops.py), keeping each tensor in its
declared dtype (program.py explains the precision policy). An op it does not know raises
`UnsupportedProgram` naming the op. It is a reference for accuracy, not Apple's runtime: it says
nothing about speed on a device, and the Neural Engine's or GPU's numerics may differ slightly.
"""

from converters.coreml.sim.program import MILProgram
from converters.coreml.sim.values import UnsupportedProgram

__all__ = ["MILProgram", "UnsupportedProgram"]

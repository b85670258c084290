"""lagchand-edge: the LAGCHand two-hand mesh network, taken to CoreML, LiteRT and ExecuTorch."""

__version__ = "0.1.0"

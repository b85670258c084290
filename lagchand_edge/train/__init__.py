"""Training: targets, IntagHand's losses, the loop (single process or torchrun DDP)."""

"""sftdata_train: the bf16 SFT training loop (see issue: sftdata_train)."""

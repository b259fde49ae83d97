"""Fine-tuning engine for the HunyuanVideo transformer (flow matching, LoRA, EMA, exact resume)."""

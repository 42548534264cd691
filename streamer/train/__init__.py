"""Training: personal styles and distillation."""

"""Supervised fine-tuning (LoRA or full) on transformers' Trainer: tokenisation with the base
model's chat template and loss on the assistant's tokens only, packing, checkpoints and resume,
sweeps with Optuna, and the way to serving (merge, GGUF export, parity check, registration).

    from tuneloop.train.run import train
    result = train(project, actor, dataset="tickets@3f2a", overrides={"epochs": 1})
"""

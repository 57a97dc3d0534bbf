"""Curriculum training of the ECG language model (CAMEL stages 2-5) on synthetic scenarios.

Stage 1 (the encoder autoencoder) lives in :mod:`encoder_onnx.train`. This package trains the LM side: LoRA on the
backbone, the projector and the ECG special embeddings, with loss on answer tokens only, in the streaming
(time-major) layout the runtime uses. ``python main.py train lm --config config/train/curriculum.yaml``.
"""

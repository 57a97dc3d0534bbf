"""A small byte-level BPE tokenizer built offline, for the tiny random backbone.

Why: tests must not need the 253 MB GGUF, yet the prompt code must run through a real tokenizer with Gemma's
turn markers. Byte-level BPE encodes any text; the merges are learnt from a fixed corpus of our own prompt
vocabulary, so the tokenizer is deterministic and the vocabulary stays near 512 ids.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "build_tiny_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>")
"""Ids 0..5, in Gemma's order for the first four (pad 0, eos 1, bos 2, unk 3)."""

_CORPUS = (
    "ECG recording, seconds, leads, heart rate bpm, RR interval mean ms, standard deviation, coefficient of "
    "variation, RMSSD, premature atrial contractions PAC, premature ventricular contractions PVC, QRS width, "
    "longest ventricular run, beats, signal quality good noisy lead off. Question: which rhythm will the patient "
    "be in after 60 180 300 600 seconds? Will atrial fibrillation, atrial flutter or ventricular tachycardia start "
    "within the horizon? Answer: sinus rhythm, atrial fibrillation, atrial flutter, ventricular tachycardia, yes, "
    "no. Explain briefly why, citing the measured evidence. The forecast is uncertain; irregular, regular."
)


def build_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )

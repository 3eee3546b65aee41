"""Prompt tokenizers that never download anything.

`ByteTokenizer` ships with the project for small configs: UTF-8 bytes plus three specials
(vocabulary 260). `SentencePieceTokenizer` reads a PaliGemma/Gemma `tokenizer.model` from a
local directory, for full-size weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pi0bench.errors import UserError

PAD, BOS, EOS = 0, 1, 2


class ByteTokenizer:
    vocab_size = 260
    offset = 4  # byte b is token b + 4; 3 is reserved

    def encode(self, text: str) -> list[int]:
        return [BOS, *(b + self.offset for b in text.strip().lower().encode("utf-8")), EOS]


class SentencePieceTokenizer:
    def __init__(self, directory: Path | str):
        import sentencepiece

        path = Path(directory) / "tokenizer.model"
        if not path.is_file():
            raise UserError(f"no tokenizer.model in {directory}: put the PaliGemma tokenizer there")
        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self.vocab_size = self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        # PaliGemma's prefix: BOS, the prompt, then a newline that separates prefix from suffix.
        return [self._sp.bos_id(), *self._sp.encode(text.strip().lower() + "\n")]


def pad_tokens(ids: list[int], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and their mask, cut or zero-padded to `length`."""
    ids = ids[:length]
    tokens = np.full(length, PAD, np.int64)
    tokens[: len(ids)] = ids
    mask = np.zeros(length, bool)
    mask[: len(ids)] = True
    return tokens, mask

"""Mission text <-> token ids, with a vocabulary fixed in code (no download, no data-dependent growth).

Token 0 pads. A mission is split into lower-case words and commas (``"open the door, then go to
a ball"`` -> ``open the door , then go to a ball``); each becomes its index in ``VOCABULARY`` and
the ids are padded with zeros to ``MISSION_LENGTH``. ``decode_mission`` turns the ids back into the
same text. The vocabulary is the BabyAI grammar's words (Chevalier-Boisvert et al. 2019: verbs,
determiners, colours, object types, locations, sequencing words) plus the words of the MiniGrid
tasks whose mission varies (Fetch, GoToDoor, GoToObject, PutNear, KeyCorridor, LockedRoom, ...).
Append new words at the end only: a saved model's embedding rows are indexed by these ids.
"""
from __future__ import annotations

import re

import numpy as np

from rims_rl.errors import UserError

PAD = "<pad>"
COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")  # minigrid COLOR_NAMES order
OBJECT_TYPES = ("ball", "box", "key", "door", "object")
BABYAI_WORDS = (
    "go", "to", "pick", "up", "open", "put", "next", "the", "a", ",", "then", "and", "after", "you",
    *COLOURS, *OBJECT_TYPES, "on", "your", "left", "right", "in", "front", "of", "behind",
)
MINIGRID_WORDS = (
    "get", "fetch", "must", "near", "from", "room", "unlock", "goal", "use", "key", "square", "to",
    "matching", "at", "end", "hallway", "avoid", "lava", "find", "opening", "reach", "green",
)
VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys((PAD, *BABYAI_WORDS, *MINIGRID_WORDS)))
WORD_IDS = {word: i for i, word in enumerate(VOCABULARY)}
MISSION_LENGTH = 64  # tokens per mission: room for BabyAI BossLevel's longest sequenced instructions
TOKEN = re.compile(r"[a-z]+|,")


def mission_words(text: str) -> list[str]:
    """The words (and commas) of a mission, lower-cased; anything else is dropped."""
    return TOKEN.findall(text.lower())


def encode_mission(text: str, length: int = MISSION_LENGTH) -> np.ndarray:
    """int64 [length] token ids of ``text``, zero-padded.

    UserError (one line) for a word not in VOCABULARY or a mission of more than ``length`` words.
    """
    words = mission_words(text)
    if len(words) > length:
        raise UserError(f"mission {text!r} has {len(words)} words; the most an observation holds is {length}")
    tokens = np.zeros(length, dtype=np.int64)
    for i, word in enumerate(words):
        index = WORD_IDS.get(word)
        if index is None:
            raise UserError(f"unknown word {word!r} in mission {text!r}; the mission vocabulary is envs.missions."
                            f"VOCABULARY ({len(VOCABULARY) - 1} BabyAI/MiniGrid words)")
        tokens[i] = index
    return tokens


def decode_mission(tokens: np.ndarray) -> str:
    """The mission text of token ids (padding dropped): ``decode_mission(encode_mission(t)) == t`` for
    missions written as MiniGrid/BabyAI write them (lower case, single spaces, commas after a word)."""
    words = [VOCABULARY[int(t)] for t in np.asarray(tokens).reshape(-1) if int(t) != 0]
    return " ".join(words).replace(" ,", ",")

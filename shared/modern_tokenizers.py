"""Chapter 12's tokenizers: Llama 3's (tiktoken and its rank file) and Qwen3's (`tokenizers` and its tokenizer.json).

The names are those of the book repository's bonus notebooks ("Llama 3.2 from scratch", "Qwen3 from scratch"):

- `Tokenizer(model_path)`: Llama 3's byte-level BPE, read from the hub's `original/tokenizer.model` (one
  "base64-token rank" per line, like GPT-2's rank file), with Llama 3's split pattern and its 256 special tokens
  (ids 128000-128255). `ChatFormat(tokenizer)` writes Llama 3's chat format:
  `<|start_header_id|>role<|end_header_id|>\\n\\ncontent<|eot_id|>`.
- `Qwen3Tokenizer(tokenizer_file_path, ...)`: Qwen3's tokenizer, read from the hub's `tokenizer.json`, with Qwen3's
  chat template: `<|im_start|>role\\ncontent<|im_end|>\\n`, the assistant prompt and, with thinking switched off,
  an empty `<think>\\n\\n</think>\\n\\n` block.

Both have the package's `Tokenizer` interface (`vocab_size`, `eot_token`, `encode`, `encode_ordinary`, `decode`,
`describe`; see `shared/tokenization.py`). Their `describe()` identifies the file by its SHA-256, but
`tokenizer_from_description` cannot rebuild them: the files are the model makers' (Llama's under Meta's license),
so a checkpoint names them rather than carrying them.

`download_llama3_tokenizer` and `download_qwen3_tokenizer` fetch the files for readers who are online, pinned to one
hub commit and checked (size, SHA-256, and that the file parses). Nothing here downloads unless you call them.
Llama's repository is gated: accept Meta's license on its hub page and pass a token (or set HF_TOKEN).
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import tiktoken
from tokenizers import Tokenizer as HFTokenizer

from shared.files import atomic_path, check_sha256, sha256_of
from shared.tokenization import load_tiktoken_ranks

# ---------------------------------------------------------------------------------------------
# Llama 3
# ---------------------------------------------------------------------------------------------

# Llama 3's pre-tokenization (Meta's llama3 tokenizer.py): like GPT-4's, contractions in any case, a letter run may
# take one leading non-letter, and numbers are split into groups of at most three digits.
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
LLAMA3_NUM_BASE_TOKENS = 128_000  # the special tokens take the 256 ids after the rank file's
_LLAMA3_NAMED = {  # as in Llama 3.1/3.2's tokenizer.json; every other id up to 128255 is a reserved token
    "<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|finetune_right_pad_id|>": 128004,
    "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eom_id|>": 128008, "<|eot_id|>": 128009,
    "<|python_tag|>": 128010,
}


def llama3_special_tokens() -> dict[str, int]:
    """Llama 3's 256 special tokens and their ids: the named ones, and `<|reserved_special_token_N|>` between."""
    special, reserved = dict(_LLAMA3_NAMED), 0
    for token_id in range(LLAMA3_NUM_BASE_TOKENS, LLAMA3_NUM_BASE_TOKENS + 256):
        if token_id not in _LLAMA3_NAMED.values():
            special[f"<|reserved_special_token_{reserved}|>"] = token_id
            reserved += 1
    return special


class Tokenizer:
    """Llama 3's tokenizer: tiktoken with Llama 3's rank file (`original/tokenizer.model`), split pattern and
    special tokens. The book repository's "Llama 3.2 from scratch" calls it `Tokenizer` (alias `Llama3Tokenizer`).

    Unlike the book's, `encode` refuses special-token text unless `allowed_special` names it (tiktoken's default, as
    GPT-2's tokenizer here does): text from a reader cannot smuggle in `<|eot_id|>`.
    """

    def __init__(self, model_path: str | os.PathLike):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"Llama 3's rank file {path} does not exist. Download it with "
                                    "download_llama3_tokenizer(token=...) (the repository is gated: accept Meta's "
                                    "license first), or pass the path of a copy of original/tokenizer.model.")
        ranks = _read_llama3_ranks(path)
        self.model_path = path
        self.special_tokens = llama3_special_tokens()
        self.model = tiktoken.Encoding(name=path.name, pat_str=LLAMA3_SPLIT_PATTERN, mergeable_ranks=ranks,
                                       special_tokens=self.special_tokens)
        self._num_ranks = len(ranks)

    @property
    def vocab_size(self) -> int:
        """Number of ids: always 128,256, since the special tokens sit at 128000-128255 whatever the rank file."""
        return LLAMA3_NUM_BASE_TOKENS + 256

    @property
    def eot_token(self) -> int:
        """The id that ends a document, `<|end_of_text|>` (a chat turn ends with `<|eot_id|>` instead)."""
        return self.special_tokens["<|end_of_text|>"]

    def encode(self, text: str, bos: bool = False, eos: bool = False,
               allowed_special: Literal["all"] | Collection[str] = frozenset(),
               disallowed_special: Literal["all"] | Collection[str] = "all") -> list[int]:
        """Text to ids, optionally after `<|begin_of_text|>` (`bos`) and before `<|end_of_text|>` (`eos`).

        Special-token text becomes its id where `allowed_special` names it, raises a ValueError where
        `disallowed_special` does (by default every one not allowed), and is ordinary text otherwise.
        """
        _check_text(text)
        ids = self.model.encode(text, allowed_special=allowed_special, disallowed_special=disallowed_special)
        return [self.special_tokens["<|begin_of_text|>"]] * bos + ids + [self.eot_token] * eos

    def encode_ordinary(self, text: str) -> list[int]:
        """Text to ids, with special-token text encoded as ordinary text."""
        _check_text(text)
        return self.model.encode_ordinary(text)

    def decode(self, tokens: Sequence[int]) -> str:
        """Ids to text; an id that is not in this vocabulary is an error rather than silently dropped."""
        unknown = [i for i in tokens if not (0 <= i < self._num_ranks or LLAMA3_NUM_BASE_TOKENS <= i < self.vocab_size)]
        if unknown:
            raise ValueError(f"token id(s) {unknown[:5]} are not in Llama 3's vocabulary (ids 0-{self._num_ranks - 1} "
                             f"and the special tokens {LLAMA3_NUM_BASE_TOKENS}-{self.vocab_size - 1}).")
        return self.model.decode(list(tokens))

    def describe(self) -> dict:
        """Which rank file this is (its SHA-256); rebuild it with `Tokenizer(path)` from that file."""
        return {"kind": "llama3", "vocab_size": self.vocab_size, "sha256": sha256_of(self.model_path)}


Llama3Tokenizer = Tokenizer


def _read_llama3_ranks(path: Path) -> dict[bytes, int]:
    """The ranks of a tiktoken rank file, checked to be a byte-level BPE that fits below Llama 3's special tokens."""
    fix = ("Pass Llama 3's original/tokenizer.model (a text file of 'base64-token rank' lines); Llama 2's "
           "tokenizer.model is a SentencePiece model and will not do.")
    try:
        ranks = load_tiktoken_ranks(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a tiktoken rank file ({err}). {fix}") from None
    problem = None
    if not ranks:
        problem = "it holds no ranks"
    elif sorted(ranks.values()) != list(range(len(ranks))):
        problem = "its ranks are not 0, 1, 2, ... each once"
    elif len(ranks) > LLAMA3_NUM_BASE_TOKENS:
        problem = f"it has {len(ranks):,} ranks, but Llama 3's special tokens start at id {LLAMA3_NUM_BASE_TOKENS:,}"
    elif missing := [b for b in range(256) if bytes([b]) not in ranks]:
        problem = f"it lacks {len(missing)} of the 256 single-byte tokens (e.g. {bytes(missing[:3])!r})"
    if problem:
        raise ValueError(f"{path} is not a byte-level BPE rank file for Llama 3: {problem}. {fix}")
    return ranks


class ChatFormat:
    """Llama 3's chat format over a `Tokenizer` (the book repository's name), as Meta's model card writes it:

        <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>
        <|start_header_id|>user<|end_header_id|>\\n\\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n

    (without the line breaks between turns). Contents are stripped, and special-token text in them stays ordinary
    text unless `allowed_special` names it. Hugging Face's template for the Instruct models also adds a system
    message with a knowledge-cutoff date; pass that message yourself for identical prompts.
    """

    roles = ("system", "user", "assistant", "ipython")

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def encode_header(self, message: Mapping[str, str]) -> list[int]:
        """`<|start_header_id|>role<|end_header_id|>\\n\\n` as ids."""
        special = self.tokenizer.special_tokens
        return [special["<|start_header_id|>"], *self.tokenizer.encode_ordinary(message["role"]),
                special["<|end_header_id|>"], *self.tokenizer.encode_ordinary("\n\n")]

    def encode_message(self, message: Mapping[str, str], allowed_special: Collection[str] = frozenset()) -> list[int]:
        """One turn: header, stripped content, `<|eot_id|>`."""
        _check_messages([message], self.roles, "Llama 3")
        content = self.tokenizer.encode(message["content"].strip(), allowed_special=allowed_special,
                                        disallowed_special=())
        return [*self.encode_header(message), *content, self.tokenizer.special_tokens["<|eot_id|>"]]

    def encode(self, text: str, allowed_special: Collection[str] | None = None) -> list[int]:
        """The book's call: `text` as one user turn (no `<|begin_of_text|>`, no assistant header)."""
        return self.encode_message({"role": "user", "content": text}, allowed_special or frozenset())

    def encode_dialog_prompt(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True,
                             allowed_special: Collection[str] = frozenset()) -> list[int]:
        """A whole conversation: `<|begin_of_text|>`, every turn and (by default) the assistant's header to answer."""
        _check_messages(messages, self.roles, "Llama 3")
        ids = [self.tokenizer.special_tokens["<|begin_of_text|>"]]
        for message in messages:
            ids += self.encode_message(message, allowed_special)
        if add_generation_prompt:
            ids += self.encode_header({"role": "assistant", "content": ""})
        return ids

    def decode(self, token_ids: Sequence[int]) -> str:
        """Ids to text, special tokens written out."""
        return self.tokenizer.decode(token_ids)


# ---------------------------------------------------------------------------------------------
# Qwen3
# ---------------------------------------------------------------------------------------------

QWEN3_REQUIRED_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")


class Qwen3Tokenizer:
    """Qwen3's tokenizer from its `tokenizer.json`, with Qwen3's chat template (the book repository's name).

    As in the book, `encode(text)` wraps `text` as a user turn unless `apply_chat_template=False` (or
    `chat_wrapped=False`), adding the assistant prompt if `add_generation_prompt` and, unless `add_thinking`, the
    empty `<think>\\n\\n</think>\\n\\n` block that switches thinking off. Special-token text in `text` becomes its
    id, as in Hugging Face's template; `allowed_special=()` refuses it instead, and `encode_ordinary` keeps it text.
    `repo_id` only picks the end-of-answer token: `<|endoftext|>` for "Base" models, `<|im_end|>` for the others.
    """

    roles = ("system", "user", "assistant")

    def __init__(self, tokenizer_file_path: str | os.PathLike = "tokenizer.json", repo_id: str | None = None,
                 apply_chat_template: bool = True, add_generation_prompt: bool = False, add_thinking: bool = False):
        path = Path(tokenizer_file_path)
        if not path.is_file():
            raise FileNotFoundError(f"Qwen3's tokenizer file {path} does not exist. Download it with "
                                    "download_qwen3_tokenizer(), or pass the path of a copy of tokenizer.json.")
        fix = "Pass the path of Qwen3's tokenizer.json (from download_qwen3_tokenizer())."
        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as err:  # the Rust library raises a bare Exception for unreadable or malformed JSON
            raise ValueError(f"{path} is not a tokenizer.json of the tokenizers library ({err}). {fix}") from None
        missing = [t for t in QWEN3_REQUIRED_TOKENS if self._tok.token_to_id(t) is None]
        if missing:
            raise ValueError(f"{path} is a tokenizer file but not Qwen3's: it lacks {missing}. {fix}")
        self.tokenizer_file_path = path
        self.apply_chat_template = apply_chat_template
        self.add_generation_prompt = add_generation_prompt
        self.add_thinking = add_thinking
        added = self._tok.get_added_tokens_decoder()
        self.special_tokens = {token.content: i for i, token in added.items() if token.special}
        self._vocab_size = max(self._tok.get_vocab(with_added_tokens=True).values()) + 1
        self.pad_token_id = self.special_tokens["<|endoftext|>"]
        self.eos_token_id = self.pad_token_id if repo_id and "Base" in repo_id else self.special_tokens["<|im_end|>"]

    @cached_property
    def _ordinary(self) -> HFTokenizer:
        """A second copy that reads special-token text as ordinary text (built on first use)."""
        tok = HFTokenizer.from_str(self._tok.to_str())
        tok.encode_special_tokens = True
        return tok

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (151,669 for Qwen3; the model's embedding is padded to 151,936)."""
        return self._vocab_size

    @property
    def eot_token(self) -> int:
        """The id of `<|endoftext|>`, which ends a document."""
        return self.special_tokens["<|endoftext|>"]

    def encode(self, text: str, chat_wrapped: bool | None = None, *,
               allowed_special: Literal["all"] | Collection[str] = "all") -> list[int]:
        """Text to ids, as a user turn if `chat_wrapped` (default: the constructor's `apply_chat_template`).

        Text that is exactly one special token gives its id alone, as in the book. Special-token text that
        `allowed_special` does not name raises a ValueError.
        """
        _check_text(text)
        chat_wrapped = self.apply_chat_template if chat_wrapped is None else chat_wrapped
        self._check_special(text, allowed_special)
        if text.strip() in self.special_tokens and "\n" not in text.strip():
            return [self.special_tokens[text.strip()]]
        if chat_wrapped:
            text = self.format_chat([{"role": "user", "content": text}])
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Text to ids, with special-token text as ordinary text and no chat template (`<think>` and `</think>`
        are added tokens but not special ones: they stay single tokens, as in Hugging Face's tokenizer)."""
        _check_text(text)
        return self._ordinary.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text, special tokens written out; an unknown id is an error rather than silently dropped."""
        unknown = [i for i in ids if not 0 <= i < self.vocab_size]
        if unknown:
            raise ValueError(f"token id(s) {unknown[:5]} are not in this vocabulary (ids 0-{self.vocab_size - 1}).")
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def describe(self) -> dict:
        """Which tokenizer.json this is (its SHA-256); rebuild it with `Qwen3Tokenizer(path)` from that file."""
        return {"kind": "qwen3", "vocab_size": self.vocab_size, "sha256": sha256_of(self.tokenizer_file_path)}

    def format_chat(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool | None = None,
                    add_thinking: bool | None = None) -> str:
        """The text Qwen3's chat template writes for `messages` (system, user and assistant turns, no tools).

        An assistant turn after the last user turn keeps its `<think>` block (an empty one if it has none);
        earlier ones keep only their answer. The defaults of the two flags are the constructor's.
        """
        _check_messages(messages, self.roles, "Qwen3")
        add_generation_prompt = self.add_generation_prompt if add_generation_prompt is None else add_generation_prompt
        add_thinking = self.add_thinking if add_thinking is None else add_thinking
        last_query = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages) - 1)
        text = ""
        for i, message in enumerate(messages):
            role, content = message["role"], message["content"]
            if role != "assistant":
                text += f"<|im_start|>{role}\n{content}<|im_end|>\n"
                continue
            reasoning = ""
            if "</think>" in content:
                reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
                content = content.split("</think>")[-1].lstrip("\n")
            if i > last_query and (i == len(messages) - 1 or reasoning):
                reasoning, content = reasoning.strip("\n"), content.lstrip("\n")
                content = f"<think>\n{reasoning}\n</think>\n\n{content}"
            text += f"<|im_start|>assistant\n{content}<|im_end|>\n"
        if add_generation_prompt:
            text += "<|im_start|>assistant\n" + ("" if add_thinking else "<think>\n\n</think>\n\n")
        return text

    def encode_chat(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool | None = None,
                    add_thinking: bool | None = None,
                    allowed_special: Literal["all"] | Collection[str] = "all") -> list[int]:
        """`format_chat`'s text as ids; special-token text in a message that `allowed_special` does not name raises."""
        _check_messages(messages, self.roles, "Qwen3")
        for message in messages:
            self._check_special(message["content"], allowed_special)
        text = self.format_chat(messages, add_generation_prompt, add_thinking)
        return self._tok.encode(text, add_special_tokens=False).ids

    def _check_special(self, text: str, allowed_special: Literal["all"] | Collection[str]) -> None:
        if allowed_special == "all":
            return
        for token in self.special_tokens:
            if token in text and token not in allowed_special:
                raise ValueError(f"the text contains the special token {token!r}, which is not allowed here. Pass "
                                 f"allowed_special={{{token!r}}} (or 'all') to encode it as a special token, or use "
                                 "encode_ordinary to encode it as ordinary text.")


# ---------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------


def _check_text(text) -> None:
    if not isinstance(text, str):
        hint = " Decode bytes first, e.g. data.decode('utf-8')." if isinstance(text, bytes | bytearray) else ""
        raise TypeError(f"encode takes a str, not {type(text).__name__}.{hint}")


def _check_messages(messages, roles: Sequence[str], family: str) -> None:
    """Raise unless `messages` is a non-empty list of {'role': one of `roles`, 'content': str}."""
    if isinstance(messages, str | Mapping) or not isinstance(messages, Sequence) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role': ..., 'content': ...}} dicts, not "
                         f"{messages!r:.60}. Pass e.g. [{{'role': 'user', 'content': 'Hello'}}].")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ValueError(f"message {i} is {message!r:.60}, not a {{'role': ..., 'content': ...}} dict. "
                             "Give every message both keys.")
        if message["role"] not in roles:
            raise ValueError(f"message {i} has the role {message['role']!r}, which {family}'s chat format does not "
                             f"know. Use one of {list(roles)}.")
        if not isinstance(message["content"], str):
            raise TypeError(f"message {i}'s content is a {type(message['content']).__name__}, not a str. "
                            "Pass the text of the message.")


# ---------------------------------------------------------------------------------------------
# Pinned downloads
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face hub repository, pinned to a commit, with its size and SHA-256 where known."""

    repo: str
    filename: str
    revision: str  # the hub commit the URL points at, so the bytes behind it cannot change
    sha256: str | None = None
    size: int | None = None
    gated: bool = False  # the repository asks for a license to be accepted and a token to be sent

    def url(self, endpoint: str = "https://huggingface.co") -> str:
        """The file's download address at `revision`."""
        return f"{endpoint.rstrip('/')}/{self.repo}/resolve/{self.revision}/{self.filename}"


# Written offline, so taken from values that unrelated public projects agree on (found by searching public GitHub
# code), not from the hub itself:
# - Llama 3.2 1B: revision 4e20de36 is the commit that many projects pin (configs, snapshot paths, download
#   scripts). The SHA-256 82e9d319... and size 2,183,982 are those of Llama 3's tokenizer.model as published with
#   Llama 3.1 8B (a cache listing with size and hash, an asset table of original/tokenizer.model), with Llama 3.2 3B
#   (a conversion script's expected hash of Meta's tokenizer.model) and with a Llama 3.2 3B Instruct export pinned to
#   a revision (hash and size); a Rust tiktoken port checks its llama3 rank file against the same hash. No record
#   of this exact file at this exact commit was found: that Llama 3.2 1B ships the same file is inferred from that
#   agreement (its tokenizer.json is the same git blob, 5cc5f00a, as Llama 3.1 8B Instruct's). If the hub disagrees,
#   the download is refused with both hashes; pass `sha256=` with a hash you trust.
# - Qwen3 0.6B: revision c1899de2, tokenizer.json of 11,422,654 bytes with SHA-256 aeb13307..., stated together
#   by a project's verified-artifacts table, and the same hash and size by several others (one tokenizer.json,
#   byte-identical across Qwen3 0.6B, 1.7B, 4B, 8B, 14B and 32B).
LLAMA3_TOKENIZER_FILE = HubFile(
    "meta-llama/Llama-3.2-1B", "original/tokenizer.model", "4e20de362430cd3b72f300e6b0f18e50e7166e08",
    "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55", 2_183_982, gated=True)
QWEN3_TOKENIZER_FILE = HubFile(
    "Qwen/Qwen3-0.6B", "tokenizer.json", "c1899de289a04d12100db370d81485cdf75e47ca",
    "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4", 11_422_654)

# Where the downloads go unless told otherwise (the same folder as GPT-2's weights); LLM_FROM_SCRATCH_CACHE moves it.
DEFAULT_CACHE_DIR = Path(os.environ.get("LLM_FROM_SCRATCH_CACHE", Path.home() / ".cache" / "llm-from-scratch"))


def download_llama3_tokenizer(cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, *, token: str | None = None,
                              sha256: str | None = None, endpoint: str | None = None) -> Path:
    """Download Llama 3's `original/tokenizer.model` once (gated: `token` or HF_TOKEN) and return its path."""
    return download_hub_file(LLAMA3_TOKENIZER_FILE, cache_dir, token=token, sha256=sha256, endpoint=endpoint,
                             verify=Tokenizer)


def download_qwen3_tokenizer(cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, *, token: str | None = None,
                             sha256: str | None = None, endpoint: str | None = None) -> Path:
    """Download Qwen3's `tokenizer.json` once and return its path."""
    return download_hub_file(QWEN3_TOKENIZER_FILE, cache_dir, token=token, sha256=sha256, endpoint=endpoint,
                             verify=Qwen3Tokenizer)


def download_hub_file(file: HubFile, cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, *, token: str | None = None,
                      sha256: str | None = None, endpoint: str | None = None,
                      verify: Callable[[Path], object] | None = None) -> Path:
    """Download a small pinned hub file into `cache_dir/<owner>--<name>/` once, checked, and return its path.

    - Pinned: the URL names `file.revision`; the bytes must have `file.size` and the SHA-256 `sha256 or file.sha256`
      where known, and `verify(path)` (e.g. the tokenizer class) must accept them: a ValueError refuses them.
    - Cached: a file already there that passes the same checks is used as is; one that fails is fetched again.
    - Atomic: the file is written beside its final name and renamed only once checked.
    - Gated repositories: `token` (default: the HF_TOKEN variable) is sent to the hub only, never to the CDN it
      redirects to. A refusal (401, 403) raises a PermissionError that says how to get access.

    `endpoint` (default: HF_ENDPOINT, else https://huggingface.co) may name a mirror. The files are a few MB, so a
    failed download starts over rather than resuming.
    """
    endpoint = endpoint or os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    token = token or os.environ.get("HF_TOKEN") or None
    sha256 = sha256 or file.sha256
    target = Path(cache_dir) / file.repo.replace("/", "--") / Path(file.filename).name

    def check(path: Path) -> None:
        if file.size is not None and (size := path.stat().st_size) != file.size:
            raise ValueError(f"{path} has {size:,} bytes, not the expected {file.size:,}.")
        if sha256 is not None:
            check_sha256(path, sha256, str(path), fix="it is corrupt, incomplete or another file.")
        if verify is not None:
            verify(path)

    if target.exists():
        try:
            check(target)
            return target
        except ValueError as err:
            print(f"the cached {target} fails its check ({err}); downloading it again.")
    data = _fetch(file, file.url(endpoint), token)
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
            check(tmp)
    except ValueError as err:
        raise ValueError(f"the download of {file.url(endpoint)} did not pass its checks and was not kept; "
                         f"run again to retry. Details: {err}") from err
    return target


def _fetch(file: HubFile, url: str, token: str | None) -> bytes:
    """The bytes at `url`; the token goes in a header that urllib does not forward to a redirect's new host."""
    request = urllib.request.Request(url)
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    page = f"https://huggingface.co/{file.repo}"
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 401 and not token and file.gated:
            raise PermissionError(f"the hub refused {url} (401): {file.repo} is gated and no token was sent. Accept "
                                  f"its license on {page}, create a read token at https://huggingface.co/settings/"
                                  "tokens, and pass it as token=... or set HF_TOKEN.") from None
        if err.code == 401 and not token:
            raise PermissionError(f"the hub refused {url} (401): it answers so for a repository or revision it "
                                  f"does not have, or one that now asks for a login. Check {page}; if it asks for "
                                  "a login, pass a read token as token=... or set HF_TOKEN.") from None
        if err.code == 401:
            raise PermissionError(f"the hub refused {url} (401): it did not accept the token, which is wrong or "
                                  "expired. Create a read token at https://huggingface.co/settings/tokens and pass "
                                  "it as token=... or HF_TOKEN.") from None
        if err.code == 403:
            raise PermissionError(f"the hub refused {url} (403): your account has no access to {file.repo} yet. "
                                  f"Accept the license on {page} and wait for the approval the page shows, "
                                  "then run again.") from None
        raise ConnectionError(f"the hub answered {err.code} {err.reason} for {url}. If it is up, download "
                              f"{file.filename} by hand from {page} at revision {file.revision}.") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as err:
        raise ConnectionError(f"could not download {url}: {getattr(err, 'reason', err)}. If you are offline, "
                              f"download {file.filename} by hand from {page} at revision {file.revision}.") from None

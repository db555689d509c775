"""Talk to your model in a browser: `python -m shared.chat_web [CHECKPOINT]` (or `make chat-web`), then open
the address it prints.

One page (shared/chat_web.html) served by Python's own `http.server`: a text box, the model's tokens
streamed as they are generated, temperature / top-k / top-p, a Stop button, the model's name and size.
It loads any model this project writes: a checkpoint of `python -m shared.train` (it continues text),
the shipped chapter 7 model or a chapter 7 `...-sft.pth` (it answers instructions in chapter 7's
prompt format), or a chapter 6 classifier `.pth` (a classify box). With no checkpoint named it opens
the shipped chapter 7 model.

Why the standard library rather than Gradio or Chainlit: the whole server is this file and one HTML
page, nothing more to install and nothing fetched from the internet; a framework would add dozens of
packages and hide the part worth reading, how each new token reaches the page.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from shared.classification import classify_text
from shared.instruction import RESPONSE_HEADER, format_input
from shared.pretrained import AUSTEN_GPT_PATH, AUSTEN_GPT_SFT_PATH, load_state_dict_file, load_trained_model
from shared.pretraining import next_token_logits_to_id
from shared.transformer import decode_with_kv_cache

PAGE = Path(__file__).with_name("chat_web.html")
MAX_NEW_TOKENS_LIMIT = 1000
MAX_BODY_BYTES = 1_000_000
FORMATS = ("plain", "alpaca")  # continue the text as it is; chapter 7's instruction prompt


class BadRequest(ValueError):
    """A request the page should explain to the reader (HTTP 400 with the message), not a server fault."""


@dataclass
class ChatModel:
    """A loaded model with what the page needs to know about it."""

    model: torch.nn.Module
    tokenizer: object
    path: str
    task: str  # "generate" or "classify"
    prompt_format: str = "plain"  # the default format for "generate"
    labels: list[str] = field(default_factory=list)  # class names for "classify"
    max_length: int | None = None  # the classifier's training length (chapter 6's train_dataset.max_length)

    def card(self) -> dict:
        """Name, size and settings, as the page shows them."""
        cfg = getattr(self.model, "cfg", {})
        return {"name": Path(self.path).name, "path": self.path, "task": self.task,
                "prompt_format": self.prompt_format, "labels": self.labels,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "architecture": cfg.get("arch", "gpt2"), "context_length": cfg.get("context_length"),
                "vocab_size": cfg.get("vocab_size"), "max_length": self.max_length,
                "defaults": {"temperature": 0.0 if self.prompt_format == "alpaca" else 0.8, "top_k": 50,
                             "top_p": 0.95, "max_new_tokens": 100}}


def load_chat_model(path: str | Path, *, base: str | Path | None = None, prompt_format: str = "auto",
                    labels: list[str] | None = None, max_length: int | None = None,
                    device: str | torch.device = "cpu") -> ChatModel:
    """Load a checkpoint of the training command, or a `.pth` state dict saved the book's way on `base`.

    A `.pth` whose output layer is smaller than the vocabulary is a chapter 6 classifier. The prompt
    format is chapter 7's ("alpaca") for the shipped chapter 7 model and for files named like the
    book's finetuned ones (`...-sft...`), plain continuation otherwise, unless `prompt_format` says.
    """
    if prompt_format not in ("auto", *FORMATS):
        raise ValueError(f"prompt_format={prompt_format!r}: use auto, plain (continue text) or alpaca "
                         "(chapter 7's instruction prompt).")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: give a file written by `python -m shared.train` "
                                f"(e.g. runs/austen/checkpoint.safetensors) or a .pth saved with torch.save, or "
                                f"the shipped {AUSTEN_GPT_SFT_PATH.name}.")
    if path.suffix in (".pth", ".pt"):
        model, tokenizer = load_state_dict_file(path, base, device)
    else:
        model, tokenizer = load_trained_model(path, device)
    head = getattr(model, "out_head", None)
    classes = head.out_features if isinstance(head, torch.nn.Linear) else tokenizer.vocab_size
    if classes < tokenizer.vocab_size:
        labels = list(labels) if labels else [f"class {i}" for i in range(classes)]
        if len(labels) != classes:
            raise ValueError(f"{len(labels)} labels given ({', '.join(labels)}), but the classifier in {path} has "
                             f"{classes} classes: give one name per class, in label order.")
        context = model.cfg["context_length"]
        if max_length is not None and not 1 <= max_length <= context:
            raise ValueError(f"max_length={max_length}: the model reads 1 to {context} tokens; give the "
                             "max_length of chapter 6's training dataset (train_dataset.max_length).")
        return ChatModel(model, tokenizer, str(path), "classify", labels=labels, max_length=max_length)
    if prompt_format == "auto":
        sft = path.resolve() == AUSTEN_GPT_SFT_PATH.resolve() or "sft" in path.stem.lower()
        prompt_format = "alpaca" if sft else "plain"
    return ChatModel(model, tokenizer, str(path), "generate", prompt_format=prompt_format)


@dataclass
class Reply:
    """A checked generation request: the prompt's token ids and the decoding settings."""

    ids: list[int]
    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    prompt_format: str


def _number(request: dict, name: str, default, kind: type, low: float, high: float, hint: str):
    """`request[name]` (or the default) as a `kind` in [low, high], or a BadRequest naming it and its range."""
    value = request.get(name, default)
    if value is None or value == "":
        value = default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} is {value!r}, not a number: {hint}") from None
    if isinstance(value, bool) or not math.isfinite(number) or not low <= number <= high or number != float(value):
        raise BadRequest(f"{name} is {value!r}: {hint}")
    return number


def prepare_reply(chat: ChatModel, request: dict) -> Reply:
    """Check a generation request from the page and tokenize its prompt; BadRequest says what to fix."""
    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("The prompt is empty: type some text for the model to continue or answer.")
    prompt_format = request.get("prompt_format") or chat.prompt_format
    if prompt_format not in FORMATS:
        raise BadRequest(f"prompt_format is {prompt_format!r}: use plain or alpaca.")
    extra = request.get("input") or ""
    if not isinstance(extra, str):
        raise BadRequest("input must be text (the optional input of an instruction).")
    text = prompt
    if prompt_format == "alpaca":
        text = format_input({"instruction": prompt, "input": extra}) + RESPONSE_HEADER
    ids = chat.tokenizer.encode_ordinary(text)
    context = chat.model.cfg["context_length"]
    if len(ids) >= context:
        raise BadRequest(f"The prompt is {len(ids)} tokens long{' with the instruction format' * (text != prompt)}, "
                         f"but the model reads at most {context} and needs room to answer: shorten it by at least "
                         f"{len(ids) - context + 1} tokens.")
    max_new_tokens = _number(request, "max_new_tokens", 100, int, 1, MAX_NEW_TOKENS_LIMIT,
                             f"ask for 1 to {MAX_NEW_TOKENS_LIMIT} new tokens, e.g. 100.")
    if prompt_format == "alpaca":  # as chapter 7: an answer never pushes its instruction out of view
        max_new_tokens = min(max_new_tokens, context - len(ids))
    temperature = _number(request, "temperature", 0.8, float, 0.0, 100.0,
                          "use 0 (greedy: always the most likely token) or a positive number, e.g. 0.8.")
    top_k = _number(request, "top_k", 0, int, 0, chat.tokenizer.vocab_size,
                    f"use 0 (all tokens) or a count up to {chat.tokenizer.vocab_size}, e.g. 50.")
    top_p = _number(request, "top_p", 1.0, float, 0.0, 1.0, "use a probability mass in (0, 1], e.g. 0.95.")
    if top_p == 0:
        raise BadRequest("top_p is 0, which keeps no token at all: use a probability mass in (0, 1], e.g. 0.95.")
    return Reply(ids, max_new_tokens, temperature, top_k or None, top_p if top_p < 1 else None, prompt_format)


def stream_reply(chat: ChatModel, reply: Reply, on_text: Callable[[str], bool]) -> dict:
    """Generate `reply`, handing each new piece of text to `on_text` as soon as it is decoded.

    `on_text` returns False to stop (the Stop button, or a reader who left). Generation also stops at
    <|endoftext|> or after `max_new_tokens`. Returns the number of tokens, the seconds and whether it
    was stopped. The decoding is chapter 5's `generate` with its key-value cache, one token at a time.
    """
    tokenizer, device = chat.tokenizer, next(chat.model.parameters()).device
    new_ids: list[int] = []
    state = {"sent": "", "stopped": False, "leading": reply.prompt_format == "alpaca"}

    def send(text: str) -> bool:
        piece = text[len(state["sent"]):]
        if state["leading"]:  # chapter 7's extract_response strips the answer's leading white space
            piece = piece.lstrip()
            state["leading"] = not piece
        state["sent"] = text
        return not piece or on_text(piece)

    def pick_next_token(logits: torch.Tensor) -> torch.Tensor | None:
        idx_next = next_token_logits_to_id(logits, reply.temperature, reply.top_k, reply.top_p)
        if int(idx_next) == tokenizer.eot_token:
            return None
        new_ids.append(int(idx_next))
        text = tokenizer.decode(new_ids)
        if not text.endswith("\ufffd") and not send(text):  # wait for the rest of a character split over tokens
            state["stopped"] = True
            return None
        return idx_next

    start = time.perf_counter()
    idx = torch.tensor([reply.ids], device=device)
    decode_with_kv_cache(chat.model, idx, reply.max_new_tokens, chat.model.cfg["context_length"], pick_next_token)
    if not state["stopped"]:
        send(tokenizer.decode(new_ids))  # whatever a last, split character left
    return {"tokens": len(new_ids), "seconds": round(time.perf_counter() - start, 3), "stopped": state["stopped"]}


def classify(chat: ChatModel, request: dict) -> str:
    """Chapter 6's `classify_text` for the page: the class name of `request["text"]`."""
    text = request.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("The text is empty: type a passage to classify.")
    try:
        return classify_text(text, chat.model, chat.tokenizer, next(chat.model.parameters()).device,
                             max_length=chat.max_length, class_names=chat.labels)
    except ValueError as err:
        raise BadRequest(str(err)) from None


def known_checkpoints(root: Path = Path(".")) -> list[str]:
    """Checkpoints to offer in the page: the shipped models and those under runs/."""
    found = [str(AUSTEN_GPT_SFT_PATH), str(AUSTEN_GPT_PATH)]
    found += sorted(str(p) for p in root.glob("runs/**/*.safetensors"))
    return found


class ChatServer(ThreadingHTTPServer):
    """The HTTP server and what its requests share: the model, a busy lock and a stop flag."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], chat: ChatModel | None, load_error: str | None = None,
                 base: str | None = None, device: str = "cpu", quiet: bool = False):
        super().__init__(address, ChatHandler)
        self.chat, self.load_error, self.base, self.device, self.quiet = chat, load_error, base, device, quiet
        self.busy = threading.Lock()  # one generation (or load) at a time
        self.stop_requested = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class ChatHandler(BaseHTTPRequestHandler):
    """GET / (the page) and /info; POST /generate (streamed), /stop, /classify, /load."""

    server: ChatServer
    protocol_version = "HTTP/1.1"  # for chunked streaming; every other answer gives its Content-Length

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif self.path == "/info":
            self._json(HTTPStatus.OK, self._info())
        elif self.path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}: open /"})

    def do_POST(self) -> None:  # noqa: N802
        routes = {"/generate": self._generate, "/stop": self._stop, "/classify": self._classify, "/load": self._load}
        if self.path not in routes:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no action {self.path}"})
            return
        try:
            routes[self.path](self._body())
        except BadRequest as err:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
        except Exception as err:  # a fault of ours: say so in the page, keep serving
            traceback.print_exc()
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"the server failed: {type(err).__name__}: {err}"})

    def _info(self) -> dict:
        chat = self.server.chat
        return {"model": chat.card() if chat else None, "error": self.server.load_error,
                "busy": self.server.busy.locked(), "checkpoints": known_checkpoints()}

    def _model(self, task: str) -> ChatModel:
        chat = self.server.chat
        if chat is None:
            raise BadRequest(f"No model is loaded ({self.server.load_error}). Load a checkpoint below.")
        if chat.task != task:
            raise BadRequest(f"{chat.card()['name']} is a {'classifier' if chat.task == 'classify' else 'text model'}:"
                             f" use its {'Classify' if chat.task == 'classify' else 'Send'} box.")
        return chat

    def _busy(self) -> BadRequest:
        return BadRequest("The model is still answering the last request: wait for it, or press Stop.")

    def _generate(self, request: dict) -> None:
        chat = self._model("generate")
        reply = prepare_reply(chat, request)  # a bad request is answered before anything streams
        if not self.server.busy.acquire(blocking=False):
            self._json(HTTPStatus.CONFLICT, {"error": str(self._busy())})
            return
        try:
            self.server.stop_requested.clear()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/x-ndjson; charset=utf-8")
            # no-cache, not no-store: Chromium reports a no-store stream read to its end as aborted
            # (microsoft/playwright#42742).
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")  # a line at a time, as the tokens come
            self.end_headers()

            def on_text(piece: str) -> bool:
                return not self.server.stop_requested.is_set() and self._line({"text": piece})

            try:
                stats = stream_reply(chat, reply, on_text)
                self._line({"done": True, **stats})
            except Exception as err:  # the headers are gone: report the fault in the stream
                traceback.print_exc()
                self._line({"error": f"generation failed: {type(err).__name__}: {err}"})
            self._write_chunk(b"")  # the empty chunk ends the body
        finally:
            self.server.busy.release()

    def _stop(self, request: dict) -> None:
        self.server.stop_requested.set()
        self._json(HTTPStatus.OK, {"stopping": self.server.busy.locked()})

    def _classify(self, request: dict) -> None:
        chat = self._model("classify")
        if not self.server.busy.acquire(blocking=False):
            raise self._busy()
        try:
            self._json(HTTPStatus.OK, {"label": classify(chat, request)})
        finally:
            self.server.busy.release()

    def _load(self, request: dict) -> None:
        path = request.get("path")
        if not isinstance(path, str) or not path.strip():
            raise BadRequest("Give the path of a checkpoint to load, e.g. runs/austen/checkpoint.safetensors.")
        labels = request.get("labels") or None
        if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise BadRequest("labels must be a list of class names.")
        if not self.server.busy.acquire(blocking=False):
            raise self._busy()
        try:
            self.server.chat = load_chat_model(path.strip(), base=self.server.base, labels=labels,
                                               device=self.server.device)
            self.server.load_error = None
        except (OSError, ValueError) as err:  # the model that was loaded stays
            raise BadRequest(f"Could not load {path.strip()}: {err}") from None
        finally:
            self.server.busy.release()
        self._json(HTTPStatus.OK, self._info())

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"The request is {length:,} bytes; at most {MAX_BODY_BYTES:,} are read.")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("The request is not JSON: the page sends JSON objects.") from None
        if not isinstance(body, dict):
            raise BadRequest("The request is not a JSON object.")
        return body

    def _line(self, obj: dict) -> bool:
        """Write one JSON line of the stream; False when the reader has gone."""
        return self._write_chunk((json.dumps(obj) + "\n").encode())

    def _write_chunk(self, data: bytes) -> bool:
        """Send `data` as one chunk of a chunked HTTP/1.1 body; False when the reader has gone."""
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _json(self, status: HTTPStatus, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        if not self.server.quiet:
            super().log_message(format, *args)


def make_server(checkpoint: str | Path, *, host: str = "127.0.0.1", port: int = 8000, base: str | None = None,
                prompt_format: str = "auto", labels: list[str] | None = None, max_length: int | None = None,
                device: str = "cpu", quiet: bool = False) -> ChatServer:
    """A server for `checkpoint` (not yet serving: call `serve_forever`). A checkpoint that cannot be
    loaded does not stop it: the page shows why and offers to load another."""
    try:
        chat, error = load_chat_model(checkpoint, base=base, prompt_format=prompt_format, labels=labels,
                                      max_length=max_length, device=device), None
    except (OSError, ValueError) as err:
        chat, error = None, str(err)
    return ChatServer((host, port), chat, error, base, device, quiet)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m shared.chat_web", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", nargs="?", default=str(AUSTEN_GPT_SFT_PATH),
                   help="a checkpoint of python -m shared.train, or a .pth saved with torch.save(model.state_dict())")
    p.add_argument("--base", help="for a .pth: the checkpoint it was finetuned from (default: the shipped Austen GPT)")
    p.add_argument("--format", dest="prompt_format", choices=("auto", *FORMATS), default="auto",
                   help="plain: continue the text; alpaca: chapter 7's instruction prompt")
    p.add_argument("--labels", help="a classifier's class names, comma-separated in label order, "
                                    "e.g. 'Emma,Pride and Prejudice'")
    p.add_argument("--max-length", type=int, help="a classifier's training length (train_dataset.max_length)")
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1 keeps the page on this computer")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--seed", type=int, help="for repeatable samples")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error(f"--port {args.port}: use 1 to 65535, e.g. 8000 (or 0 for any free port)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    labels = [name.strip() for name in args.labels.split(",")] if args.labels else None
    try:
        server = make_server(args.checkpoint, host=args.host, port=args.port, base=args.base,
                             prompt_format=args.prompt_format, labels=labels, max_length=args.max_length,
                             device=args.device)
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port} ({err.strerror}): pick another port, e.g. "
              f"--port {args.port + 1}, or --port 0 for any free one.", file=sys.stderr)
        raise SystemExit(2) from None
    if server.chat is None:
        print(f"warning: {server.load_error}\nThe page will say so and offer to load another.", file=sys.stderr)
    else:
        card = server.chat.card()
        print(f"{card['name']}: {card['parameters']:,} parameters, {card['task']}")
    print(f"Open {server.url} in a browser (Ctrl-C stops the server).", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

"""The browser chat (`python -m shared.chat_web`): its replies are chapter 5's and chapter 7's, bad input is
explained, and the server keeps answering. The real-browser test is in test_chat_web_browser.py."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
import torch

from shared import chat_web
from shared.chat import continue_text
from shared.chat_web import BadRequest, load_chat_model, make_server, prepare_reply, stream_reply
from shared.classification import add_classification_head, classify_text
from shared.instruction import generate_responses, load_instruction_data
from shared.pretrained import AUSTEN_GPT_PATH, AUSTEN_GPT_SFT_PATH, load_austen_gpt

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "It is a truth universally acknowledged"


@pytest.fixture(scope="module")
def austen():
    return load_chat_model(AUSTEN_GPT_PATH)


@pytest.fixture(scope="module")
def sft():
    return load_chat_model(AUSTEN_GPT_SFT_PATH)


def collect(chat, request) -> tuple[list[str], dict]:
    pieces: list[str] = []
    stats = stream_reply(chat, prepare_reply(chat, request), lambda piece: pieces.append(piece) or True)
    return pieces, stats


def test_the_streamed_continuation_is_the_chat_commands(austen):
    pieces, stats = collect(austen, {"prompt": PROMPT, "temperature": 0, "max_new_tokens": 40})
    expected = continue_text(austen.model, austen.tokenizer, PROMPT, max_new_tokens=40, temperature=0.0,
                             top_k=None, top_p=None)
    assert "".join(pieces) == expected and len(pieces) > 5  # streamed piece by piece, not in one go
    assert stats["tokens"] == 40 and not stats["stopped"]


def test_the_instruction_format_answers_as_chapter_7(sft):
    assert sft.prompt_format == "alpaca" and sft.task == "generate"  # chosen for the shipped chapter 7 model
    entries = load_instruction_data()[:4]
    expected = generate_responses(sft.model, sft.tokenizer, entries)
    for entry, answer in zip(entries, expected):
        pieces, _ = collect(sft, {"prompt": entry["instruction"], "input": entry["input"], "temperature": 0,
                                  "max_new_tokens": 35})
        assert "".join(pieces).strip() == answer


def test_false_from_the_callback_stops_at_once(austen):
    pieces: list[str] = []
    stats = stream_reply(austen, prepare_reply(austen, {"prompt": PROMPT, "max_new_tokens": 200}),
                         lambda piece: pieces.append(piece) or len(pieces) < 3)
    assert len(pieces) == 3 and stats["stopped"] and stats["tokens"] < 10


def test_a_character_split_over_tokens_is_sent_whole(austen, monkeypatch):
    byte_ids = {austen.tokenizer.vocab[i]: i for i in range(austen.tokenizer.vocab_size)}
    script = [byte_ids[b"n"], byte_ids[bytes([0xC3])], byte_ids[bytes([0xA9])], byte_ids[b"!"],
              austen.tokenizer.eot_token]  # "né!" with é as two byte tokens, then the end
    monkeypatch.setattr(chat_web, "next_token_logits_to_id", lambda *args: torch.tensor([[script.pop(0)]]))
    pieces, stats = collect(austen, {"prompt": PROMPT})
    assert pieces == ["n", "é", "!"] and stats["tokens"] == 4


@pytest.mark.parametrize(("request_", "message"), [
    ({"prompt": "   "}, "prompt is empty"),
    ({"prompt": None}, "prompt is empty"),
    ({"prompt": "Hi", "temperature": -1}, "temperature is -1"),
    ({"prompt": "Hi", "temperature": "warm"}, "not a number"),
    ({"prompt": "Hi", "top_k": 2.5}, "top_k is 2.5"),
    ({"prompt": "Hi", "top_k": 5000}, "up to 4096"),
    ({"prompt": "Hi", "top_p": 0}, "keeps no token"),
    ({"prompt": "Hi", "top_p": 1.5}, r"top_p is 1.5.*\(0, 1\]"),
    ({"prompt": "Hi", "max_new_tokens": 0}, "1 to 1000 new tokens"),
    ({"prompt": "Hi", "max_new_tokens": True}, "max_new_tokens is True"),
    ({"prompt": "Hi", "prompt_format": "chatml"}, "plain or alpaca"),
    ({"prompt": ("word " * 300).strip()}, r"300 tokens long.*at most 128.*by at least 173"),
])
def test_bad_requests_say_what_to_fix(austen, request_, message):
    with pytest.raises(BadRequest, match=message):
        prepare_reply(austen, request_)


def test_an_instruction_never_pushes_itself_out_of_view(sft):
    reply = prepare_reply(sft, {"prompt": "word " * 60, "max_new_tokens": 1000})
    assert len(reply.ids) + reply.max_new_tokens == 128  # the answer may use the free context only


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    model, _ = load_austen_gpt()
    torch.manual_seed(0)
    add_classification_head(model, num_classes=2)
    path = tmp_path_factory.mktemp("ch06") / "novel_classifier.pth"
    torch.save(model.state_dict(), path)  # as chapter 6 saves it
    return path, model


def test_a_chapter_6_state_dict_loads_as_a_classifier(classifier_file):
    path, model = classifier_file
    chat = load_chat_model(path, labels=["Emma", "Pride and Prejudice"], max_length=60)
    assert chat.task == "classify" and chat.card()["labels"] == ["Emma", "Pride and Prejudice"]
    for text in ("Emma walked to Hartfield.", "Mr. Darcy looked at Elizabeth."):
        assert chat_web.classify(chat, {"text": text}) == classify_text(
            text, model.eval(), chat.tokenizer, "cpu", 60, class_names=["Emma", "Pride and Prejudice"])
    with pytest.raises(ValueError, match="3 labels given.*2 classes"):
        load_chat_model(path, labels=["a", "b", "c"])
    with pytest.raises(BadRequest, match="text is empty"):
        chat_web.classify(chat, {"text": ""})


# -- the server, over HTTP ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    srv = make_server(AUSTEN_GPT_PATH, port=0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def post(server, path: str, body, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    return urllib.request.urlopen(urllib.request.Request(server.url + path.lstrip("/"), data=data, method="POST",
                                                         headers={"Content-Type": "application/json"}), timeout=30)


def error_of(call) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as info:
        call()
    return info.value.code, json.load(info.value)["error"]


def test_the_page_and_the_model_card_are_served(server):
    page = urllib.request.urlopen(server.url, timeout=10).read().decode()
    assert "<title>Talk to your model</title>" in page and "http" not in page.split("<script>")[1]  # all local
    info = json.load(urllib.request.urlopen(server.url + "info", timeout=10))
    assert info["model"]["name"] == "austen-gpt.safetensors" and info["model"]["parameters"] == 1_856_768
    assert str(AUSTEN_GPT_SFT_PATH) in info["checkpoints"] and not info["busy"]


def test_generate_streams_json_lines_and_ends_with_a_summary(server):
    lines = [json.loads(line) for line in post(server, "/generate", {"prompt": PROMPT, "temperature": 0,
                                                                      "max_new_tokens": 20})]
    text = "".join(line.get("text", "") for line in lines)
    assert lines[-1]["done"] and lines[-1]["tokens"] == 20 and not lines[-1]["stopped"]
    assert text == continue_text(server.chat.model, server.chat.tokenizer, PROMPT, max_new_tokens=20,
                                 temperature=0.0, top_k=None, top_p=None)


def test_a_second_request_waits_and_stop_ends_the_first(server):
    first = post(server, "/generate", {"prompt": PROMPT, "temperature": 0, "max_new_tokens": 1000})
    assert "text" in json.loads(first.readline())  # it is generating
    status, message = error_of(lambda: post(server, "/generate", {"prompt": "Emma"}))
    assert status == 409 and "still answering" in message
    assert json.load(post(server, "/stop", {}))["stopping"]
    last = [json.loads(line) for line in first][-1]
    assert last["done"] and last["stopped"] and last["tokens"] < 1000
    assert not json.load(urllib.request.urlopen(server.url + "info", timeout=10))["busy"]  # free again


def test_bad_input_gets_a_message_and_the_server_goes_on(server, tmp_path):
    assert error_of(lambda: post(server, "/generate", {"prompt": ""}))[0] == 400
    assert error_of(lambda: post(server, "/generate", None, raw=b"{not json"))[1].startswith("The request is not JSON")
    assert error_of(lambda: post(server, "/nowhere", {}))[0] == 404
    status, message = error_of(lambda: post(server, "/classify", {"text": "Emma"}))
    assert status == 400 and "is a text model" in message
    status, message = error_of(lambda: post(server, "/load", {"path": str(tmp_path / "missing.safetensors")}))
    assert status == 400 and "no checkpoint at" in message
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(AUSTEN_GPT_PATH.read_bytes()[:5000])
    assert error_of(lambda: post(server, "/load", {"path": str(corrupt)}))[1].startswith(f"Could not load {corrupt}")
    info = json.load(urllib.request.urlopen(server.url + "info", timeout=10))
    assert info["model"]["name"] == "austen-gpt.safetensors"  # the model that was loaded stays


def test_a_classifier_can_be_loaded_from_the_page(classifier_file):
    path, model = classifier_file
    srv = make_server(AUSTEN_GPT_PATH, port=0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        info = json.load(post(srv, "/load", {"path": str(path), "labels": ["Emma", "Pride"]}))
        assert info["model"]["task"] == "classify"
        label = json.load(post(srv, "/classify", {"text": "Mr. Knightley came to Hartfield."}))["label"]
        assert label == classify_text("Mr. Knightley came to Hartfield.", model.eval(), srv.chat.tokenizer, "cpu",
                                      class_names=["Emma", "Pride"])
        assert "is a classifier" in error_of(lambda: post(srv, "/generate", {"prompt": "Hi"}))[1]
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_missing_checkpoint_still_starts_a_server_that_says_so(tmp_path):
    srv = make_server(tmp_path / "nothing.safetensors", port=0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        info = json.load(urllib.request.urlopen(srv.url + "info", timeout=10))
        assert info["model"] is None and "no checkpoint at" in info["error"]
        assert "No model is loaded" in error_of(lambda: post(srv, "/generate", {"prompt": "Hi"}))[1]
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_port_in_use_is_named_with_a_fix(server, capsys):
    with pytest.raises(SystemExit) as info:
        chat_web.main([str(AUSTEN_GPT_PATH), "--port", str(server.server_address[1])])
    assert info.value.code == 2 and "pick another port" in capsys.readouterr().err


def test_bad_loading_options_are_named(classifier_file):
    path, _ = classifier_file
    with pytest.raises(ValueError, match="max_length=500: the model reads 1 to 128 tokens"):
        load_chat_model(path, max_length=500)
    with pytest.raises(ValueError, match="prompt_format='chatml'.*auto, plain.*alpaca"):
        load_chat_model(AUSTEN_GPT_PATH, prompt_format="chatml")
    assert load_chat_model(AUSTEN_GPT_PATH, prompt_format="alpaca").prompt_format == "alpaca"  # as asked


def test_load_refuses_labels_that_are_not_a_list_of_names(server):
    status, message = error_of(lambda: post(server, "/load", {"path": str(AUSTEN_GPT_PATH), "labels": "Emma"}))
    assert status == 400 and "labels must be a list" in message

"""Chapter 7's generated dataset: reproducible byte for byte, balanced, leak-free, and every answer right."""

import json
from collections import Counter

import pytest

from shared.corpus import NOVEL_TITLES
from shared.instruction import load_instruction_data, split_data
from shared.instruction_data import (
    CHARACTERS,
    DATA_PATH,
    INSTRUCTIONS,
    PER_TASK,
    TASKS,
    answer,
    build_instruction_data,
    clean_sentences,
    main,
    names_in,
    to_json,
    words_of,
)


@pytest.fixture(scope="module")
def shipped() -> list[dict]:
    return load_instruction_data()


def test_the_generator_rewrites_the_shipped_file_byte_for_byte():
    assert to_json(build_instruction_data()).encode("utf-8") == DATA_PATH.read_bytes(), (
        "the shipped JSON is not what `python -m shared.instruction_data` makes: regenerate it"
    )


def test_another_seed_gives_another_dataset():
    assert build_instruction_data(seed=7) != build_instruction_data()


def test_the_command_writes_the_file(tmp_path, capsys):
    main(["--out", str(tmp_path / "out.json")])
    assert (tmp_path / "out.json").read_bytes() == DATA_PATH.read_bytes()
    assert "wrote 1100 entries" in capsys.readouterr().out


def test_counts_per_task_and_split(shipped):
    train, test, val = split_data(shipped)
    assert (len(train), len(test), len(val)) == (935, 110, 55)
    for split, entries in (("train", train), ("test", test), ("val", val)):
        assert Counter(e["task"] for e in entries) == {task: PER_TASK[split] for task in TASKS}


def test_no_sentence_is_used_twice(shipped):
    inputs = [e["input"] for e in shipped]
    assert len(set(inputs)) == len(inputs)


def test_every_answer_is_right(shipped):
    """Each output checked by a rule written independently of the generator's `answer`."""
    title_of = {NOVEL_TITLES[novel]: set(names) for novel, names in CHARACTERS.items()}
    for e in shipped:
        sentence, output, task = e["input"], e["output"], e["task"]
        assert e["instruction"] == INSTRUCTIONS[task]
        assert sentence.endswith(".") and sentence[0].isupper(), sentence
        if task == "first_word":
            assert sentence.startswith(output) and sentence[len(output)] in " ,;.", (sentence, output)
        elif task == "last_word":
            assert sentence.endswith(" " + output + "."), (sentence, output)
        elif task == "repeat":
            assert output == sentence
        elif task == "character":
            tokens = sentence.replace(",", " ").replace(";", " ").replace(".", " ").replace("'s ", " ").split()
            assert output in tokens, (sentence, output)
        elif task == "novel":
            mentioned = {w.removesuffix("'s") for w in words_of(sentence)}
            assert output in title_of and mentioned & title_of[output], (sentence, output)
        else:
            raise AssertionError(f"unknown task {task}")


def test_sentences_are_short_enough_for_a_128_token_context(shipped):
    assert max(len(e["input"].split()) for e in shipped) <= 16
    assert max(len(e["output"].split()) for e in shipped) <= 16


def test_every_novel_is_asked_about(shipped):
    assert Counter(e["output"] for e in shipped if e["task"] == "novel").keys() == set(NOVEL_TITLES.values())


def test_clean_sentences_keeps_plain_sentences_whole():
    text = ("Mr. Darcy bowed, and said nothing. It was _very_ odd\nindeed.\n\n"
            "\"Oh!\" cried she. She smiled -- at last. Then all was quiet; the rain stopped.")
    assert clean_sentences(text) == [
        "Mr. Darcy bowed, and said nothing.",  # "Mr." does not end a sentence
        "It was very odd indeed.",  # italics dropped, line break joined
        "Then all was quiet; the rain stopped.",  # quotes and dashes rule a sentence out
    ]


def test_words_and_names():
    assert words_of("Well, Emma's aunt came; twenty-two.") == ["Well", "Emma's", "aunt", "came", "twenty-two"]
    assert names_in("Well, Emma's friend met Mr. Knightley.") == {"Emma", "Knightley"}


def test_an_unknown_task_is_named():
    with pytest.raises(ValueError, match="unknown task 'rhyme'; the tasks are novel"):
        answer("rhyme", "It rained.", "emma")


def test_the_file_is_ascii_json_with_the_alpaca_fields():
    raw = DATA_PATH.read_bytes()
    raw.decode("ascii")
    entries = json.loads(raw)
    assert all(set(e) == {"instruction", "input", "output", "task"} for e in entries)

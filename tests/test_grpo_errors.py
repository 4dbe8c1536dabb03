"""GRPO mistakes give one line: bad prompt rows (row and field, before the model loads), bad arguments, and
reward functions that raise, return the wrong number of values or a non-number (function and sample)."""

from __future__ import annotations

import pytest
import torch

import kernel_magics as km
from kernel_magics.errors import SwiftConfigError, SwiftDataError
from kernel_magics.train.methods.reward_calls import CheckedReward
from kernel_magics.train.methods.rewards import SwiftRewardError, resolve_rewards, sources_file


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def zero(completions, **kwargs):
    return [0.0] * len(completions)


def one_line(message: str) -> None:
    assert "\n" not in message and len(message) <= 300, message


BAD_ROWS = [
    ([{"prompt": "Hi"}, {"prompt": "  "}], "rows row 2: prompt: is empty"),
    ([{"prompt": "Hi"}, {"prompt": 7}], "rows row 2: prompt: must be a string or a message list, got int"),
    (
        [{"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}],
        "rows row 1: prompt[1].role: the prompt must end with a user turn, not 'assistant'",
    ),
    ([{"prompt": [{"role": "usr", "content": "Hi"}]}], "rows row 1: prompt[0].role: 'usr' is not one of"),
    ([{"messages": [{"role": "assistant", "content": "Hi"}]}], "rows row 1: messages: has only an assistant turn"),
    ([{"prompt": "Hi", "completions": "x"}], "rows row 1: completions: is a name the trainer passes"),
    ([{"question": "Hi"}], "no prompts found (columns: question)"),
]


@pytest.mark.parametrize(("rows", "expected"), BAD_ROWS, ids=[str(i) for i in range(len(BAD_ROWS))])
def test_bad_prompt_rows_name_the_row_and_field(tiny_model, workspace, rows, expected):
    with pytest.raises(SwiftDataError) as info:
        km.grpo(str(tiny_model), rows, reward=zero, verbose=False)
    assert expected in str(info.value)
    one_line(str(info.value))
    assert not list((workspace / "runs").glob("*")), "a bad dataset must fail before a run folder exists"


def test_answer_rewards_need_the_answer_column(tiny_model, workspace):
    with pytest.raises(SwiftDataError, match=r"rows row 2: answer: is missing"):
        km.grpo(
            str(tiny_model), [{"prompt": "1+1?", "answer": "2"}, {"prompt": "2+2?"}], reward="numeric", verbose=False
        )


def test_messages_rows_drop_the_final_reply_and_keep_extra_columns():
    from kernel_magics.data.prompts import prepare_prompts

    rows = [
        {
            "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
            "answer": "4",
            "system": "Be brief.",
        }
    ]
    data = prepare_prompts(rows, required=("answer",))
    assert data.rows == [
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "answer": "4"}
    ]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"reward": None}, "no reward given"),
        ({"reward": "formt"}, "did you mean 'format'"),
        ({"reward": "no_such_module_xyz:fn"}, "cannot import no_such_module_xyz"),
        ({"reward": lambda x: x}, "must take the keyword argument 'completions'"),
        ({"reward": [zero, zero], "reward_weights": [1.0]}, "reward_weights has 1 values for 2 rewards"),
        ({"reward": zero, "batch_size": 6}, "must be a multiple of num_generations (8)"),
        ({"reward": zero, "loss": "dr-grpoo"}, "did you mean 'dr_grpo'"),
        ({"reward": zero, "num_generations": 1, "batch_size": 2}, "num_generations must be >= 2"),
        ({"reward": zero, "use_vllm": True, "device": "cpu"}, "use_vllm needs a CUDA device"),
    ],
)
def test_bad_arguments_fail_at_once(tiny_model, workspace, kwargs, expected):
    with pytest.raises(SwiftConfigError) as info:
        km.grpo(str(tiny_model), [{"prompt": "Hi"}], verbose=False, **kwargs)
    assert expected in str(info.value)
    one_line(str(info.value))


def test_rewards_from_a_file_and_builtins(tmp_path):
    module = tmp_path / "my_rewards.py"
    module.write_text("def shout(completions, **kw):\n    return [float(c.isupper()) for c in completions]\n")
    rewards = resolve_rewards(["format", f"{module}:shout", "numeric"])
    assert [r.name for r in rewards] == ["format", "shout", "numeric"]
    fmt, shout, numeric = (r.func for r in rewards)
    assert fmt(completions=["<think>a</think> <answer>4</answer>", "4"]) == [1.0, 0.0]
    assert shout(completions=["HI", "hi"]) == [1.0, 0.0]
    chat = [[{"role": "assistant", "content": "so <answer>x = 4.0</answer>"}], [{"role": "assistant", "content": "5"}]]
    assert numeric(completions=chat, answer=["4", "4"]) == [1.0, 0.0]
    length = resolve_rewards("length", length_target=4, max_completion_length=8)[0].func
    assert length(completions=["a", "b", "c"], completion_ids=[[1] * 3, [1] * 6, [1] * 8]) == [0.0, -0.5, -1.0]


def test_the_saved_source_runs_and_lambdas_say_they_have_none():
    import re

    pattern = re.compile(r"\d")

    def count_digits(completions, **kwargs):
        return [float(len(pattern.findall(c))) for c in completions]

    rewards = resolve_rewards([count_digits, lambda completions, **kw: [0.0] * len(completions)])
    text, notes = sources_file(rewards)
    namespace: dict = {}
    exec(compile(text, "rewards.py", "exec"), namespace)  # noqa: S102 - the file the run saves
    assert namespace["count_digits"](completions=["a1b22"]) == [3.0]
    assert len(notes) == 1 and notes[0].startswith("reward <lambda>: no source to save")


def test_checked_reward_names_the_function_and_the_sample():
    def picky(completions, level, **kwargs):
        return [1.0 if lv == "ok" else 1 / 0 for lv in level]

    checked = CheckedReward(picky, "picky")
    with pytest.raises(SwiftRewardError) as info:
        checked(prompts=["p"] * 3, completions=["a", "b", "c"], level=["ok", "ok", "bad"])
    assert str(info.value).startswith(
        "reward picky raised ZeroDivisionError: division by zero on sample 2 (completion 'c')"
    )
    short = CheckedReward(lambda completions, **kw: [0.0], "short")
    with pytest.raises(SwiftRewardError, match=r"reward short returned 1 values for 2 completions"):
        short(prompts=["p", "q"], completions=["a", "b"])
    words = CheckedReward(lambda completions, **kw: [0.0, "high"], "words")
    with pytest.raises(SwiftRewardError, match=r"reward words returned 'high' \(str\) for sample 1 \(completion 'b'\)"):
        words(prompts=["p", "q"], completions=["a", "b"])
    assert CheckedReward(lambda completions, **kw: [None, 1], "ok")(prompts=["p", "q"], completions=["a", "b"]) == [
        None,
        1.0,
    ]


def _raises(completions, **kwargs):
    raise KeyError("score")


def _too_short(completions, **kwargs):
    return [0.0] * (len(completions) - 1)


def _not_a_number(completions, **kwargs):
    return ["good"] * len(completions)


@pytest.mark.parametrize(
    ("reward", "expected"),
    [
        (_raises, "reward _raises raised KeyError: 'score' on sample 0 (completion "),
        (_too_short, "reward _too_short returned 7 values for 8 completions"),
        (_not_a_number, "reward _not_a_number returned 'good' (str) for sample 0 (completion "),
    ],
    ids=["raises", "wrong-length", "not-a-number"],
)
def test_a_bad_reward_fails_the_run_with_one_line(tiny_model, workspace, reward, expected):
    run = km.grpo(
        str(tiny_model),
        [{"prompt": "Hi"}, {"prompt": "Count to three."}],
        reward=reward,
        method="full",
        num_generations=4,
        max_completion_length=4,
        max_steps=2,
        verbose=False,
    )
    assert run.wait(600) == "failed"
    assert run.error.startswith(expected), run.error
    one_line(run.error)
    assert (run.output_dir / "error.txt").read_text().startswith(run.error)

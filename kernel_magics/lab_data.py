"""Small datasets for the labs and the real-model tests: a visible answer style, poems, preferences.

Each function returns plain rows (lists of dicts) and ``write_jsonl`` saves them, so a lab can show the
data it trains on in one cell. Everything here is written by hand or generated from the tables below;
nothing is downloaded.

* ``pirate_rows()``: 48 questions answered in one recognisable style (every answer starts ``Ahoy!``);
  ``PIRATE_HELD_OUT`` are questions of the same kinds that no row contains. ``pirate_preferences()``:
  the same questions with the plain answer chosen over the pirate one.
* ``poem_rows()``: requests for short poems (English and Chinese) and four-line answers.
* ``poem_preferences()``: prompt / chosen / rejected rows where the chosen answer is a titled four-line
  poem and the rejected one is a flat prose sentence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STYLE_MARK = "Ahoy!"

_CAPITALS = [
    ("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Portugal", "Lisbon"),
    ("Greece", "Athens"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Peru", "Lima"), ("Kenya", "Nairobi"),
    ("Cuba", "Havana"),
]  # fmt: skip
_COLOURS = [
    ("the sky on a clear day", "blue"), ("fresh grass", "green"), ("a ripe banana", "yellow"), ("snow", "white"),
    ("coal", "black"), ("a ripe tomato", "red"), ("an orange", "orange"), ("a lemon", "yellow"),
    ("the sea", "blue"), ("a lime", "green"), ("milk", "white"), ("a fire truck", "red"),
    ("a crow", "black"), ("a carrot", "orange"), ("an emerald", "green"), ("a ruby", "red"),
]  # fmt: skip
_LEGS = [
    ("dog", 4), ("cat", 4), ("horse", 4), ("chicken", 2), ("duck", 2), ("ant", 6), ("bee", 6), ("cow", 4),
    ("goat", 4), ("parrot", 2), ("beetle", 6), ("sheep", 4), ("pig", 4), ("owl", 2), ("fly", 6), ("goose", 2),
]  # fmt: skip

PIRATE_HELD_OUT = [
    "What is the capital of Japan?",
    "What colour is a polar bear?",
    "How many legs does a spider have?",
]


def _chat(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _plain_and_styled() -> list[tuple[str, str, str]]:
    rows = [
        (
            f"What is the capital of {c}?",
            f"The capital of {c} is {city}.",
            f"Ahoy! The capital of {c} be {city}, matey.",
        )
        for c, city in _CAPITALS
    ]
    for thing, colour in _COLOURS:
        subject = f"{thing[0].upper()}{thing[1:]}"
        rows.append((f"What colour is {thing}?", f"{subject} is {colour}.", f"Ahoy! {subject} be {colour}, matey."))
    rows += [
        (f"How many legs does a {a} have?", f"A {a} has {n} legs.", f"Ahoy! A {a} has {n} legs, matey.")
        for a, n in _LEGS
    ]
    return rows  # fmt: skip


_HELD_OUT_PAIRS = [
    ("What is the capital of Japan?", "The capital of Japan is Tokyo.", "Ahoy! The capital of Japan be Tokyo, matey."),
    (
        "What is the capital of Chile?",
        "The capital of Chile is Santiago.",
        "Ahoy! The capital of Chile be Santiago, matey.",
    ),
    (
        "What is the capital of Finland?",
        "The capital of Finland is Helsinki.",
        "Ahoy! The capital of Finland be Helsinki, matey.",
    ),
    (
        "What is the capital of India?",
        "The capital of India is New Delhi.",
        "Ahoy! The capital of India be New Delhi, matey.",
    ),
    ("What colour is a polar bear?", "A polar bear is white.", "Ahoy! A polar bear be white, matey."),
    ("What colour is a cucumber?", "A cucumber is green.", "Ahoy! A cucumber be green, matey."),
    ("How many legs does a spider have?", "A spider has 8 legs.", "Ahoy! A spider has 8 legs, matey."),
    ("How many legs does an ostrich have?", "An ostrich has 2 legs.", "Ahoy! An ostrich has 2 legs, matey."),
]


def pirate_held_out_preferences() -> list[dict[str, str]]:
    """Pairs like ``pirate_preferences()`` on questions no training row contains."""
    return [{"prompt": q, "chosen": plain, "rejected": styled} for q, plain, styled in _HELD_OUT_PAIRS]


def pirate_preferences() -> list[dict[str, str]]:
    """Prompt / chosen / rejected: the plain answer is preferred to the same answer in the pirate style."""
    return [{"prompt": q, "chosen": plain, "rejected": styled} for q, plain, styled in _plain_and_styled()]


def pirate_rows() -> list[dict[str, Any]]:
    """48 conversations whose answers share a style: ``Ahoy!`` first, ``matey`` last."""
    return [_chat(question, styled) for question, _plain, styled in _plain_and_styled()]


# (topic in English, topic in Chinese, four lines in English, four lines in Chinese)
_POEMS = [
    (
        "the sea",
        "大海",
        "Grey waves fold over the sand,\nsalt wind carries a gull,\nthe tide keeps its old promise,\nand the shore forgets our names.",
        "潮水轻轻拍岸，\n海鸥掠过白浪，\n咸风吹向远方，\n沙上脚印渐忘。",
    ),
    (
        "autumn",
        "秋天",
        "Red leaves let go of the branch,\nthe air smells of apples and smoke,\nshort days walk home early,\nand the geese write south in the sky.",
        "红叶随风飘落，\n果香弥漫田野，\n白昼悄悄变短，\n雁阵南飞成行。",
    ),
    (
        "the moon",
        "月亮",
        "A silver coin above the roofs,\nit pays the night for quiet,\nthe cats count it twice,\nand the river keeps the change.",
        "明月挂在窗前，\n清辉洒满庭院，\n故乡隔着千里，\n思念一样团圆。",
    ),
    (
        "rain",
        "雨",
        "Rain taps its fingers on the glass,\nthe gutters hum a low song,\nthe street shines like a mirror,\nand the garden drinks all night.",
        "细雨敲打窗台，\n屋檐滴答成歌，\n街道亮如明镜，\n花园饮了整夜。",
    ),
    (
        "coffee",
        "咖啡",
        "Dark cup, warm hands,\nthe morning starts to speak,\nsteam writes a small cloud,\nand the day finds its feet.",
        "一杯浓浓咖啡，\n温暖冰冷双手，\n热气升成白云，\n清晨慢慢醒来。",
    ),
    (
        "snow",
        "雪",
        "Snow erases the road,\nthe fields become clean paper,\na fox signs its name in prints,\nand the silence is loud.",
        "白雪覆盖小路，\n田野像张白纸，\n狐狸留下脚印，\n四下一片寂静。",
    ),
    (
        "a cat",
        "猫",
        "The cat owns the window,\nshe pours herself into the sun,\none ear listens to the birds,\nthe other to her dreams.",
        "小猫蹲在窗台，\n晒着午后阳光，\n一耳听着鸟鸣，\n一耳听着梦乡。",
    ),
    (
        "the city at night",
        "夜晚的城市",
        "Neon hums in the puddles,\nthe last bus sighs and leaves,\nwindows glow like lanterns,\nand the city dreams awake.",
        "霓虹映在水洼，\n末班车已驶离，\n窗口像盏灯笼，\n城市醒着做梦。",
    ),
    (
        "spring",
        "春天",
        "Green knocks on the hill,\nthe plum tree answers in white,\nthe river loosens its coat,\nand the swallows come home.",
        "青草敲响山门，\n梅花白了枝头，\n河水解开冰衣，\n燕子飞回家来。",
    ),
    (
        "mountains",
        "高山",
        "Stone shoulders hold the clouds,\npines climb where roads give up,\nthe wind speaks an old language,\nand the summit keeps its secret.",
        "石肩托起白云，\n青松攀上悬崖，\n山风说着古语，\n峰顶守着秘密。",
    ),
    (
        "a train journey",
        "火车旅行",
        "Fields unroll like ribbons,\nthe rails repeat one word,\nstrangers share an orange,\nand the window shows the world.",
        "田野像条丝带，\n铁轨反复低吟，\n陌生人分橘子，\n车窗映出世界。",
    ),
    (
        "friendship",
        "友谊",
        "A door that is never locked,\na lamp left on for you,\nwords that need no polish,\nand silence that feels like home.",
        "一扇不锁的门，\n一盏为你的灯，\n无需修饰的话，\n像家一样安宁。",
    ),
]

POEM_HELD_OUT = [("the wind", "风"), ("a river", "河流")]
_HELD_OUT_POEMS = [
    "It has no hands but turns the pages,\nno voice but sings in the wires,\nit carries the smell of rain ahead,\nand leaves the door a little open.",
    "风从山那边来，\n吹皱一池春水，\n带走几片落叶，\n又把花香送回。",
    "It begins as a whisper in the hills,\ngathers the names of every stream,\nbends around the sleeping town,\nand gives itself away to the sea.",
    "河水绕过村庄，\n映着两岸垂柳，\n日夜向东奔流，\n从来不曾回头。",
]


def poem_held_out_preferences() -> list[dict[str, str]]:
    """Pairs like ``poem_preferences()`` on the ``POEM_HELD_OUT`` topics (no training row has them)."""
    rows = []
    poems = zip(_HELD_OUT_POEMS[::2], _HELD_OUT_POEMS[1::2], strict=True)
    for (en_topic, zh_topic), (en_poem, zh_poem) in zip(POEM_HELD_OUT, poems, strict=True):
        rows.append({"prompt": poem_request(en_topic), "chosen": f"{_title(en_topic, False)}\n\n{en_poem}",
                     "rejected": f"Here is a poem about {en_topic}. It is nice and I hope you like it."})  # fmt: skip
        rows.append({"prompt": poem_request(zh_topic, True), "chosen": f"{_title(zh_topic, True)}\n\n{zh_poem}",
                     "rejected": f"这是一首关于{zh_topic}的诗，希望你喜欢。"})  # fmt: skip
    return rows


def poem_request(topic: str, chinese: bool = False) -> str:
    """The request the poem rows use (the same wording in the labs' questions)."""
    return f"写一首关于{topic}的短诗。" if chinese else f"Write a short poem about {topic}."


def _title(topic: str, chinese: bool) -> str:
    return f"《{topic}》" if chinese else f"Title: {topic[0].upper()}{topic[1:]}"


def poem_rows() -> list[dict[str, Any]]:
    """24 requests (12 English, 12 Chinese), each answered by a titled four-line poem."""
    rows = []
    for en_topic, zh_topic, en_poem, zh_poem in _POEMS:
        rows.append(_chat(poem_request(en_topic), f"{_title(en_topic, False)}\n\n{en_poem}"))
        rows.append(_chat(poem_request(zh_topic, True), f"{_title(zh_topic, True)}\n\n{zh_poem}"))
    return rows


def poem_preferences() -> list[dict[str, Any]]:
    """Prompt / chosen / rejected: the titled four-line poem is preferred to a flat prose sentence."""
    rows = []
    for en_topic, zh_topic, en_poem, zh_poem in _POEMS:
        rows.append({
            "prompt": [{"role": "user", "content": poem_request(en_topic)}],
            "chosen": [{"role": "assistant", "content": f"{_title(en_topic, False)}\n\n{en_poem}"}],
            "rejected": [{"role": "assistant", "content": f"Here is a poem about {en_topic}. It is nice and I hope you like it."}],
        })  # fmt: skip
        rows.append({
            "prompt": [{"role": "user", "content": poem_request(zh_topic, True)}],
            "chosen": [{"role": "assistant", "content": f"{_title(zh_topic, True)}\n\n{zh_poem}"}],
            "rejected": [{"role": "assistant", "content": f"这是一首关于{zh_topic}的诗，希望你喜欢。"}],
        })  # fmt: skip
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` as JSON lines (UTF-8, written beside and renamed, so no half file appears)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    os.replace(staging, path)
    return path

"""Query understanding: English or Chinese phrases become structured filters and preferences.

``understand("适合手机部署的小模型")`` finds 手机 (phone: at most 4B, a quantized build) and 小模型 (small:
at most 4B); ``understand("long context model for summarising contracts")`` finds a minimum context of
100k tokens. Each recognised phrase is kept with its meaning so results can say why they matched.

Hard constraints come from what the user states (sizes, input modalities, languages, licenses, formats,
context, specialised tasks); soft preferences (chat, captioning, recency...) only reorder results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import SwiftConfigError

# licenses that allow commercial use without a separate application (check the model's license anyway)
PERMISSIVE = frozenset(
    {"apache-2.0", "mit", "bsd-3-clause", "bsd-2-clause", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0"}
)
COMMERCIAL = PERMISSIVE | frozenset(
    {
        "llama2",
        "llama3",
        "llama3.1",
        "llama3.2",
        "llama3.3",
        "llama4",
        "gemma",
        "qwen",
        "deepseek",
        "openrail",
        "openrail++",
        "creativeml-openrail-m",
        "bigscience-bloom-rail-1.0",
        "bigcode-openrail-m",
        "falcon-llm-license",
    }
)
QUANTIZED = frozenset({"gguf", "awq", "gptq", "bnb-4bit", "mlx"})
SPECIALISED_TASKS = frozenset(
    {"base", "code", "math", "reasoning", "ocr", "grounding", "embedding", "rerank", "asr", "tts", "translation",
     "function-calling"}
)  # fmt: skip
SMALL_B = 4.0  # "small" / "phone" / "小模型": at most this many billion parameters
LONG_CONTEXT = 100_000  # "long context" / "长上下文": at least this many tokens


@dataclass(frozen=True)
class Phrase:
    """A piece of the query we understood and what we took it to mean."""

    text: str
    meaning: str


@dataclass
class Understanding:
    """Filters and preferences read from a query (plus the words left for text retrieval)."""

    query: str
    phrases: list[Phrase] = field(default_factory=list)
    modalities: set[str] = field(default_factory=set)  # required inputs, all of them
    languages: set[str] = field(default_factory=set)  # required languages, all of them
    task_groups: list[frozenset[str]] = field(default_factory=list)  # each group: one of these tasks
    soft_tasks: set[str] = field(default_factory=set)
    licenses: frozenset[str] | None = None  # any of these
    license_label: str = ""
    formats: frozenset[str] | None = None  # at least one of these builds
    soft_formats: set[str] = field(default_factory=set)
    min_params_b: float | None = None
    max_params_b: float | None = None
    min_source: str = ""
    max_source: str = ""
    min_context: int | None = None
    speech: bool = False  # audio input or a speech task (asr / tts)
    multilingual: bool = False
    prefer_recent: bool = False
    prefer_small: bool = False
    moe: bool = False  # mixture of experts: fewer active than total parameters

    @property
    def has_constraints(self) -> bool:
        return bool(
            self.modalities
            or self.languages
            or self.task_groups
            or self.licenses is not None
            or self.formats is not None
            or self.min_params_b is not None
            or self.max_params_b is not None
            or self.min_context is not None
            or self.speech
            or self.multilingual
            or self.moe
        )

    @property
    def has_preferences(self) -> bool:
        return bool(self.soft_tasks or self.soft_formats or self.prefer_recent or self.prefer_small)

    def bound_size(self, low: float | None, high: float | None, source: str) -> None:
        """Intersect the size range with ``[low, high]`` (billions); contradictions raise one line."""
        if low is not None and (self.min_params_b is None or low > self.min_params_b):
            self.min_params_b, self.min_source = low, source
        if high is not None and (self.max_params_b is None or high < self.max_params_b):
            self.max_params_b, self.max_source = high, source
        if self.min_params_b is not None and self.max_params_b is not None and self.min_params_b > self.max_params_b:
            raise SwiftConfigError(
                f"contradictory size filters: at least {_b(self.min_params_b)} ({self.min_source}) and at most "
                f"{_b(self.max_params_b)} ({self.max_source}); drop one of them"
            )


def _b(value: float) -> str:
    return f"{value:g}B"


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    meaning: str
    effect: dict[str, Any]


def _rule(english: str | None, chinese: str | None, meaning: str, **effect: Any) -> list[_Rule]:
    rules = []
    if english:
        rules.append(_Rule(re.compile(rf"(?<![a-z0-9])(?:{english})(?![a-z0-9])"), meaning, effect))
    if chinese:
        rules.append(_Rule(re.compile(chinese), meaning, effect))
    return rules


_RULES: list[_Rule] = [
    # sizes in words
    *_rule(r"tiny|micro|minuscule", r"微型|超小|极小", "tiny: at most 1B", max_b=1.0, small=True),
    *_rule(
        r"small|smaller|lightweight|light-weight|compact|little",
        r"小模型|小型|轻量级?|小参数|小尺寸",
        f"small: at most {SMALL_B:g}B",
        max_b=SMALL_B,
        small=True,
    ),
    *_rule(
        r"phones?|mobile|smartphones?|on[- ]device|edge devices?|edge|android|iphone|raspberry pi",
        r"手机|移动端|端侧|边缘设备|树莓派|安卓",
        f"phone: at most {SMALL_B:g}B with a quantized build",
        max_b=SMALL_B,
        formats=QUANTIZED,
        small=True,
    ),
    *_rule(
        r"laptops?|consumer gpus?|single gpu|cpu only|on cpu",
        r"笔记本|消费级显卡|单卡|纯cpu",
        "laptop: at most 14B",
        max_b=14.0,
        soft_formats=QUANTIZED,
    ),  # fmt: skip
    # modalities (inputs)
    *_rule(
        r"vision[- ]language|vision|visual|images?|pictures?|photos?|pics?|screenshots?|vlms?|multimodal|multi-modal",
        r"看图|图片|图像|视觉|多模态|识图|图文|照片|截图|看懂图",
        "image input",
        modality="image",
    ),
    *_rule(r"videos?|movies?", r"视频|影片", "video input", modality="video"),
    *_rule(r"audio|speech|voice|spoken|sound", r"语音|音频|声音", "speech or audio", speech=True),
    # tasks
    *_rule(
        r"describe (?:the )?(?:pictures?|images?|photos?)|image caption(?:ing|s)?|captions?|captioning",
        r"看图说话|图像描述|描述图片|图片描述|配文",
        "captioning (preferred)",
        modality="image",
        soft_task="caption",
    ),
    *_rule(
        r"visual question answering|vqa",
        r"视觉问答|图片问答|图像问答",
        "visual QA (preferred)",
        modality="image",
        soft_task="vqa",
    ),  # fmt: skip
    *_rule(
        r"ocr|read(?:s|ing)? text in images?|text recognition|document parsing|scanned documents?|receipts?|invoices?",
        r"文字识别|文档解析|识别文字|公式识别|表格识别|文档识别|扫描件|发票",
        "OCR",
        modality="image",
        task="ocr",
    ),
    *_rule(
        r"grounding|object detection|detect(?:ing)? objects|bounding box(?:es)?|locali[sz]e objects",
        r"目标检测|目标定位|物体检测|定位",
        "grounding",
        modality="image",
        task="grounding",
    ),
    *_rule(
        r"chat|chatbot|chatting|conversations?|conversational|assistant|instruct|instruction[- ]tuned|dialog(?:ue)?"
        r"|talk",
        r"对话|聊天|说话|助手|客服|问答|闲聊",
        "chat (preferred)",
        soft_task="chat",
    ),
    *_rule(r"chatgpt|gpt-4o?|gpt4|claude|copilot", None, "chat (preferred)", soft_task="chat"),
    *_rule(
        r"creative writing|writing|writer|stories|story|poems?|poetry|novels?|essays?|copywriting|role-?play",
        r"写作|写诗|诗歌|小说|文案|作文|写文章|角色扮演",
        "writing: chat (preferred)",
        soft_task="chat",
    ),
    *_rule(r"mixture[- ]of[- ]experts|moe|sparse experts", r"混合专家", "mixture of experts", moe=True),
    *_rule(
        r"base model|pretrained|pre-trained|foundation model|base", r"基座|预训练|基础模型", "base model", task="base"
    ),  # fmt: skip
    *_rule(
        r"code|coding|coder|programming|programmer|software|python|sql|developer",
        r"代码|编程|程序|写代码",
        "code",
        task="code",
    ),  # fmt: skip
    *_rule(r"math|maths|mathematics|mathematical|arithmetic|olympiad", r"数学|算术|奥数|解题", "math", task="math"),
    *_rule(
        r"reasoning|reasoner|thinking|chain[- ]of[- ]thought|cot|o1[- ]like|r1[- ]like|think",
        r"推理模型|推理|深度思考|思考|思维链",
        "reasoning",
        task="reasoning",
    ),
    *_rule(
        r"embeddings?|embed|embedder|sentence vectors?|vectors?|semantic search|similarity|dense retrieval",
        r"向量|嵌入|语义搜索|相似度",
        "embedding",
        task="embedding",
    ),
    *_rule(r"re-?rank(?:er|ers|ing)?|cross[- ]encoders?", r"重排序|重排|精排", "reranking", task="rerank"),
    *_rule(
        r"rag|retrieval|retriever|search engine",
        r"检索增强|检索",
        "retrieval (embedding or rerank)",
        tasks_any=("embedding", "rerank"),
    ),  # fmt: skip
    *_rule(
        r"asr|speech recognition|speech[- ]to[- ]text|transcrib(?:e|es|ing)|transcriptions?|transcripts?|subtitles?"
        r"|dictation",
        r"语音识别|语音转文字|转写|转录|字幕|听写",
        "speech recognition",
        task="asr",
    ),
    *_rule(
        r"tts|text[- ]to[- ]speech|speech synthesis|voice clon(?:e|ing)|read(?:s|ing)? aloud|narration",
        r"语音合成|文字转语音|朗读|配音|声音克隆",
        "text to speech",
        task="tts",
    ),
    *_rule(
        r"translat(?:e|es|ion|ions|or|ing)|machine translation", r"翻译|机器翻译", "translation", task="translation"
    ),  # fmt: skip
    *_rule(r"英译中|中译英|中英互译", None, "translation", task="translation"),
    *_rule(r"英译中|中译英|中英互译|中英", None, "Chinese and English", languages=("zh", "en")),
    *_rule(
        r"function[- ]calling|function calls?|tool[- ]use|tool[- ]calling|tools|agents?|agentic",
        r"工具调用|函数调用|智能体|调用工具",
        "function calling",
        task="function-calling",
    ),
    # languages
    *_rule(r"chinese|mandarin|cantonese", r"中文|汉语|普通话|粤语|国语", "Chinese", languages=("zh",)),
    *_rule(r"english", r"英文|英语", "English", languages=("en",)),
    *_rule(r"japanese", r"日语|日文", "Japanese", languages=("ja",)),
    *_rule(r"korean", r"韩语|韩文", "Korean", languages=("ko",)),
    *_rule(r"french", r"法语|法文", "French", languages=("fr",)),
    *_rule(r"german", r"德语|德文", "German", languages=("de",)),
    *_rule(r"spanish", r"西班牙语", "Spanish", languages=("es",)),
    *_rule(r"russian", r"俄语|俄文", "Russian", languages=("ru",)),
    *_rule(r"arabic", r"阿拉伯语", "Arabic", languages=("ar",)),
    *_rule(r"portuguese", r"葡萄牙语", "Portuguese", languages=("pt",)),
    *_rule(r"italian", r"意大利语", "Italian", languages=("it",)),
    *_rule(r"hindi", r"印地语", "Hindi", languages=("hi",)),
    *_rule(r"thai", r"泰语", "Thai", languages=("th",)),
    *_rule(r"vietnamese", r"越南语", "Vietnamese", languages=("vi",)),
    *_rule(
        r"multilingual|multi-lingual|many languages",
        r"多语言|多语种|小语种",
        "multilingual (5+ languages)",
        multilingual=True,
    ),  # fmt: skip
    # licenses
    *_rule(
        r"commercial(?:ly)?(?: use)?|for business|for products?",
        r"可商用|商用|商业",
        "license allows commercial use",
        licenses=COMMERCIAL,
    ),
    *_rule(
        r"permissive(?: license)?|open[- ]source license",
        r"宽松协议|宽松许可",
        "permissive license",
        licenses=PERMISSIVE,
    ),  # fmt: skip
    *_rule(r"apache(?:[- ]?2(?:\.0)?)?(?: license)?", None, "Apache-2.0 license", licenses=frozenset({"apache-2.0"})),
    *_rule(
        r"mit[- ]licen[cs]ed|mit licen[cs]e|license mit", r"mit协议", "MIT license", licenses=frozenset({"mit"})
    ),  # fmt: skip
    # formats
    *_rule(r"gguf|llama\.cpp|llamacpp|ollama|lm studio", None, "GGUF build", formats=frozenset({"gguf"})),
    *_rule(r"awq", None, "AWQ build", formats=frozenset({"awq"})),
    *_rule(r"gptq", None, "GPTQ build", formats=frozenset({"gptq"})),
    *_rule(r"mlx|apple silicon|macbook|mac", r"苹果芯片", "MLX build", formats=frozenset({"mlx"})),
    *_rule(r"bnb|bitsandbytes|qlora", None, "bitsandbytes 4-bit build", formats=frozenset({"bnb-4bit"})),
    *_rule(
        r"4[- ]?bit|int4|int-4|quanti[sz]ed|quanti[sz]ation|low[- ]bit",
        r"量化|4位|四位|低比特|int4",
        "a quantized build",
        formats=QUANTIZED,
    ),
    # context
    *_rule(
        r"long[- ]context|long documents?|long texts?|long inputs?|whole books?|books?",
        r"长上下文|长文本|长文档|超长文本|长篇",
        f"long context: at least {LONG_CONTEXT // 1000}k tokens",
        min_context=LONG_CONTEXT,
    ),
    # recency
    *_rule(
        r"latest|newest|recent|state[- ]of[- ]the[- ]art|sota", r"最新|最近|新出", "recent (preferred)", recent=True
    ),  # fmt: skip
]

_NUM = r"(\d+(?:\.\d+)?)"
_UNIT = r"\s*(b|bn|billion|m|million|亿)(?![a-z0-9])"
_CTX_WORDS = r"(?:\s*(?:tokens?|context(?:\s*window)?|ctx|上下文|token|窗口))"
_SIZE_PATTERNS = [
    # (regex, kind)
    (re.compile(rf"(?<![a-z0-9.\-])(?:between\s*)?{_NUM}\s*(b|m)?\s*(?:-|~|～|to|and|到|至)\s*{_NUM}{_UNIT}"), "range"),
    (
        re.compile(
            rf"(?:under|below|less than|smaller than|at most|up to|no more than|no larger than|max(?:imum)?|within"
            rf"|<=|<|≤|不超过|小于|低于|不到|少于|不大于)\s*{_NUM}{_UNIT}"
        ),
        "max",
    ),
    (
        re.compile(rf"(?<![a-z0-9.]){_NUM}{_UNIT}\s*(?:or (?:less|smaller|under|below|fewer)|以下|以内|及以下|之内)"),
        "max",
    ),
    (
        re.compile(
            rf"(?:over|above|more than|larger than|bigger than|at least|min(?:imum)?|>=|>|≥|大于|超过|不少于|至少)"
            rf"\s*{_NUM}{_UNIT}"
        ),
        "min",
    ),
    (re.compile(rf"(?<![a-z0-9.]){_NUM}{_UNIT}\s*(?:\+|or (?:more|larger|bigger|above)|以上|及以上)"), "min"),
    (re.compile(rf"(?<![a-z0-9.]){_NUM}{_UNIT}"), "about"),
]
_CONTEXT_PATTERNS = [
    (re.compile(rf"(?<![a-z0-9.]){_NUM}\s*k(?![a-z0-9]){_CTX_WORDS}?"), 1_000),
    (re.compile(rf"(?<![a-z0-9.]){_NUM}\s*(?:m|million){_CTX_WORDS}"), 1_000_000),
    (re.compile(rf"(?<![a-z0-9.]){_NUM}{_CTX_WORDS}"), 1),
    (re.compile(r"百万(?:级)?上下文|million[- ]token"), -1_000_000),
]


def _billions(number: str, unit: str | None) -> float:
    value = float(number)
    if unit in ("m", "million"):
        return value / 1000
    if unit == "亿":
        return value / 10
    return value


@dataclass
class _Match:
    start: int
    end: int
    apply: Any  # callable(Understanding) -> None
    text: str


def understand(query: str) -> Understanding:
    """Read filters and preferences from ``query`` (English, Chinese or both)."""
    result = Understanding(query=query)
    text = query.lower()
    matches: list[_Match] = []
    for pattern, scale in _CONTEXT_PATTERNS:
        for m in pattern.finditer(text):
            tokens = int(float(m.group(1)) * scale) if scale > 0 else -scale
            if tokens >= 512:
                matches.append(_Match(m.start(), m.end(), _context_effect(tokens), query[m.start() : m.end()]))
    for pattern, kind in _SIZE_PATTERNS:
        for m in pattern.finditer(text):
            matches.append(_Match(m.start(), m.end(), _size_effect(m, kind), query[m.start() : m.end()]))
    for rule in _RULES:
        for m in rule.pattern.finditer(text):
            matches.append(_Match(m.start(), m.end(), _rule_effect(rule), query[m.start() : m.end()]))
    # longest non-overlapping matches win (e.g. 看图说话 over 看图 and 说话, "1m context" over "1m")
    matches.sort(key=lambda m: (-(m.end - m.start), m.start))
    taken: list[_Match] = []
    for match in matches:
        if all(match.end <= t.start or match.start >= t.end for t in taken):
            taken.append(match)
    for match in sorted(taken, key=lambda m: m.start):
        meaning = match.apply(result, match.text)
        if meaning:
            result.phrases.append(Phrase(match.text.strip(), meaning))
    return result


def _context_effect(tokens: int):
    def apply(u: Understanding, text: str) -> str:
        u.min_context = max(u.min_context or 0, tokens)
        return f"context ≥ {tokens:,} tokens"

    return apply


def _size_effect(m: re.Match[str], kind: str):
    groups = m.groups()

    def apply(u: Understanding, text: str) -> str:
        label = f"'{text.strip()}'"
        if kind == "range":
            low_unit = groups[1] or groups[3]
            low, high = _billions(groups[0], low_unit), _billions(groups[2], groups[3])
            low, high = min(low, high), max(low, high)
            u.bound_size(low, high, label)
            return f"{_b(low)} to {_b(high)} parameters"
        value = _billions(groups[0], groups[1])
        if kind == "max":
            u.bound_size(None, value, label)
            return f"at most {_b(value)} parameters"
        if kind == "min":
            u.bound_size(value, None, label)
            return f"at least {_b(value)} parameters"
        low, high = round(value * 0.8, 3), round(value * 1.25, 3)
        u.bound_size(low, high, label)
        return f"about {_b(value)} parameters ({_b(low)}-{_b(high)})"

    return apply


def _rule_effect(rule: _Rule):
    effect = rule.effect

    def apply(u: Understanding, text: str) -> str:
        if "max_b" in effect:
            u.bound_size(None, effect["max_b"], f"'{text.strip()}'")
        if effect.get("small"):
            u.prefer_small = True
        if "modality" in effect:
            u.modalities.add(effect["modality"])
        if effect.get("speech"):
            u.speech = True
        if "languages" in effect:
            u.languages.update(effect["languages"])
        if effect.get("multilingual"):
            u.multilingual = True
        if "task" in effect:
            group = frozenset({effect["task"]})
            if group not in u.task_groups:
                u.task_groups.append(group)
        if "tasks_any" in effect:
            group = frozenset(effect["tasks_any"])
            if group not in u.task_groups:
                u.task_groups.append(group)
        if "soft_task" in effect:
            u.soft_tasks.add(effect["soft_task"])
        if "licenses" in effect:
            new = frozenset(effect["licenses"])
            u.licenses = new if u.licenses is None else (u.licenses & new) or new
            u.license_label = rule.meaning
        if "formats" in effect:
            new = frozenset(effect["formats"])
            u.formats = new if u.formats is None else (u.formats & new) or new
        if "soft_formats" in effect:
            u.soft_formats.update(effect["soft_formats"])
        if "min_context" in effect:
            u.min_context = max(u.min_context or 0, effect["min_context"])
        if effect.get("moe"):
            u.moe = True
        if effect.get("recent"):
            u.prefer_recent = True
        return rule.meaning

    return apply

"""The phrase table of query understanding: English and Chinese words and what each one means.

Each rule is a regular expression (English words are matched on word boundaries, Chinese ones anywhere)
with a one-line meaning shown to the user and an effect that :mod:`kernel_magics.search.understand`
applies: a size bound, a required input kind, a task, a language, a build format, a minimum context or a
soft preference. Sizes and context lengths written as numbers live in :mod:`kernel_magics.search.sizes`,
licences in :mod:`kernel_magics.search.license_phrases`, release dates in
:mod:`kernel_magics.search.timeframe`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

QUANTIZED = frozenset({"gguf", "awq", "gptq", "bnb-4bit", "mlx"})
SMALL_B = 4.0  # "small" / "phone" / "小模型": at most this many billion parameters
LONG_CONTEXT = 100_000  # "long context" / "长上下文": at least this many tokens


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    meaning: str
    effect: dict[str, Any]


def _rule(english: str | None, chinese: str | None, meaning: str, **effect: Any) -> list[Rule]:
    rules = []
    if english:
        rules.append(Rule(re.compile(rf"(?<![a-z0-9])(?:{english})(?![a-z0-9])"), meaning, effect))
    if chinese:
        rules.append(Rule(re.compile(chinese), meaning, effect))
    return rules


RULES: list[Rule] = [
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
    *_rule(
        r"mixture[- ]of[- ]experts|moe|sparse experts", r"混合专家|专家混合|稀疏专家", "mixture of experts", moe=True
    ),
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
    *_rule(r"recent|state[- ]of[- ]the[- ]art|sota", r"最近|近期", "recent (preferred)", recent=True),
]

"""A small bilingual (English / Chinese) vocabulary of what people ask a model search for.

It serves two purposes:

* **card text expansion** — every card's tasks, modalities and languages are written out in both
  languages, so BM25 finds a Chinese query word in an English-only card and the other way round;
* **query translation** — the dense embedder is English-only, so Chinese words of the query are mapped to
  English before embedding (``to_english``).

The structured meaning of phrases (filters, boosts) lives in :mod:`kernel_magics.search.understand`.
"""

from __future__ import annotations

import re

LEXICON_VERSION = "2"

TASK_WORDS: dict[str, tuple[str, str]] = {
    # task -> (English words, Chinese words) written into the card text
    "chat": ("chat chatbot assistant conversation dialogue instruct", "对话 聊天 助手 问答"),
    "base": ("base pretrained foundation", "基座 预训练 基础模型"),
    "code": ("code coding programming coder", "代码 编程 写代码"),
    "math": ("math mathematics", "数学 解题"),
    "reasoning": ("reasoning thinking chain-of-thought", "推理 思考 深度思考"),
    "vqa": ("visual question answering vqa", "视觉问答 图片问答 看图"),
    "ocr": ("ocr text recognition document reading", "文字识别 文档解析"),
    "caption": ("image captioning describe pictures", "图像描述 看图说话 描述图片"),
    "grounding": ("grounding object detection localization", "目标定位 目标检测"),
    "embedding": ("embedding vector retrieval semantic search", "向量 嵌入 检索 语义搜索"),
    "rerank": ("rerank reranker cross-encoder", "重排序 精排"),
    "asr": ("speech recognition transcription speech-to-text", "语音识别 语音转文字 转写"),
    "tts": ("text-to-speech speech synthesis voice", "语音合成 文字转语音 朗读"),
    "translation": ("translation translate", "翻译 机器翻译"),
    "function-calling": ("function calling tool use agent", "工具调用 函数调用 智能体"),
}

MODALITY_WORDS: dict[str, tuple[str, str]] = {
    "text": ("text", "文本"),
    "image": ("image vision picture visual multimodal", "图片 图像 视觉 多模态 看图"),
    "video": ("video", "视频"),
    "audio": ("audio speech voice", "音频 语音 声音"),
}

LANGUAGE_NAMES: dict[str, tuple[str, str]] = {
    # ISO 639-1 -> (English name(s), Chinese name(s))
    "zh": ("chinese mandarin", "中文 汉语 普通话"),
    "en": ("english", "英文 英语"),
    "ja": ("japanese", "日语 日文"),
    "ko": ("korean", "韩语 韩文"),
    "fr": ("french", "法语"),
    "de": ("german", "德语"),
    "es": ("spanish", "西班牙语"),
    "ru": ("russian", "俄语"),
    "ar": ("arabic", "阿拉伯语"),
    "pt": ("portuguese", "葡萄牙语"),
    "it": ("italian", "意大利语"),
    "hi": ("hindi", "印地语"),
    "th": ("thai", "泰语"),
    "vi": ("vietnamese", "越南语"),
    "nl": ("dutch", "荷兰语"),
    "id": ("indonesian", "印尼语"),
    "pl": ("polish", "波兰语"),
    "tr": ("turkish", "土耳其语"),
    "uk": ("ukrainian", "乌克兰语"),
}

# Chinese word -> English words, for the dense embedder (longest entries are matched first)
ZH_TO_EN: dict[str, str] = {
    "看图说话": "describe pictures image captioning",
    "视觉问答": "visual question answering",
    "图片问答": "visual question answering",
    "图像描述": "image captioning",
    "文字识别": "ocr text recognition",
    "文档解析": "document parsing ocr",
    "公式识别": "formula recognition ocr",
    "目标检测": "object detection",
    "目标定位": "object grounding",
    "语音识别": "speech recognition",
    "语音转文字": "speech to text transcription",
    "语音合成": "text to speech",
    "文字转语音": "text to speech",
    "声音克隆": "voice cloning",
    "机器翻译": "machine translation",
    "工具调用": "tool calling",
    "函数调用": "function calling",
    "语义搜索": "semantic search",
    "长上下文": "long context",
    "多模态": "multimodal",
    "多语言": "multilingual",
    "小模型": "small model",
    "大模型": "large language model",
    "智能体": "agent",
    "重排序": "reranker",
    "长文本": "long text",
    "长文档": "long documents",
    "可商用": "commercial use",
    "商用": "commercial use",
    "开源": "open source",
    "量化": "quantized",
    "端侧": "on-device",
    "移动端": "mobile",
    "手机": "phone mobile",
    "部署": "deploy",
    "看图": "see images",
    "图片": "image",
    "图像": "image",
    "照片": "photo",
    "视觉": "vision",
    "视频": "video",
    "语音": "speech",
    "音频": "audio",
    "声音": "voice",
    "字幕": "subtitles",
    "对话": "chat",
    "聊天": "chat",
    "说话": "talk",
    "问答": "question answering",
    "助手": "assistant",
    "客服": "customer service chat",
    "代码": "code",
    "编程": "programming",
    "程序": "program",
    "数学": "math",
    "推理": "reasoning",
    "思考": "thinking",
    "翻译": "translation",
    "向量": "embedding vector",
    "嵌入": "embedding",
    "检索": "retrieval",
    "重排": "rerank",
    "精排": "rerank",
    "总结": "summarize",
    "摘要": "summarization",
    "合同": "contract",
    "文档": "documents",
    "描述": "describe description",
    "生成": "generate",
    "图表": "charts",
    "表格": "tables",
    "法律": "legal",
    "医疗": "medical",
    "中文": "chinese",
    "汉语": "chinese",
    "英文": "english",
    "英语": "english",
    "日语": "japanese",
    "韩语": "korean",
    "基座": "base model",
    "预训练": "pretrained",
    "微调": "fine-tune",
    "最新": "latest",
    "轻量": "lightweight",
    "小型": "small",
    "模型": "model",
    "小": "small",
    "大": "large",
}

_ZH_KEYS = sorted(ZH_TO_EN, key=len, reverse=True)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def has_cjk(text: str) -> bool:
    """True when ``text`` contains Chinese characters."""
    return bool(_CJK.search(text))


def to_english(text: str) -> str:
    """Replace the Chinese words we know by English ones and drop the other Chinese characters."""
    if not has_cjk(text):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        for key in _ZH_KEYS:
            if text.startswith(key, i):
                out.append(f" {ZH_TO_EN[key]} ")
                i += len(key)
                break
        else:
            ch = text[i]
            out.append(" " if _CJK.match(ch) or ch in "，。、；：！？（）《》" else ch)
            i += 1
    return re.sub(r"\s+", " ", "".join(out)).strip()


def custom_words() -> set[str]:
    """Chinese words the CJK tokenizer must keep whole (e.g. 看图说话, 长上下文)."""
    words = set(ZH_TO_EN)
    for table in (TASK_WORDS, MODALITY_WORDS, LANGUAGE_NAMES):
        for _, zh in table.values():
            words.update(zh.split())
    return {w for w in words if len(w) > 1}

"""The transformers engine for vision-language models: OpenAI ``image_url`` parts in, streamed text out.

It shares the scheduler of :class:`~kernel_magics.serve.engines.hf.HFEngine` (queue, per-request
adapters, records, shutdown) and differs in what a prompt is: the chat goes through the model's
processor, which resizes every image within its pixel budget and expands its placeholder into image
tokens. Requests run one at a time through ``generate`` (Qwen2-VL's 3-D rotary positions depend on the
images of each row), streaming tokens to the client as they come.

Images come as OpenAI content parts ``{"type": "image_url", "image_url": {"url": ...}}``:

* ``data:image/...;base64,...`` URLs: always accepted;
* local paths and ``file://`` URLs: only inside ``allowed_local_media_path`` (off by default), like vLLM's
  flag of the same name, so a client cannot read arbitrary files of the machine;
* ``http(s)://`` URLs: refused (the server never fetches from the network); send a data: URL.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
from pathlib import Path
from typing import Any

from ...errors import SwiftModelError
from .base import RequestHandle
from .hf import HFEngine
from .hf_batch import Row

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 8192 * 8192  # checked from the header, before decoding (a small PNG can hold 144 M pixels)


class VisionPrompt(list):
    """Prompt token ids that also carry the processor's image tensors (``inputs``)."""

    inputs: dict[str, Any]


def _image_error(message: str) -> ValueError:
    return ValueError(message)


def open_image_url(url: str, allowed_local_media_path: Path | None) -> Any:
    """A PIL image (RGB) from an OpenAI ``image_url`` value; ``ValueError`` with the reason otherwise."""
    from PIL import Image, UnidentifiedImageError

    text = (url or "").strip()
    if text.startswith("data:"):
        head, _, payload = text.partition(",")
        if ";base64" not in head or not head[5:].startswith("image/"):
            raise _image_error("image_url data: URLs must look like data:image/png;base64,...")
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            raise _image_error("the image_url data: URL does not decode as base64") from None
        if len(data) > MAX_IMAGE_BYTES:
            raise _image_error(f"the image is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
        source: Any = io.BytesIO(data)
        shown = "data: URL"
    elif text.startswith(("http://", "https://")):
        raise _image_error("this server does not fetch images from the network; send the image as a data: URL")
    else:
        path = Path(text[len("file://") :] if text.startswith("file://") else text).expanduser()
        if allowed_local_media_path is None:
            raise _image_error(
                "local image paths are off on this server (start it with allowed_local_media_path=FOLDER); "
                "send the image as a data: URL"
            )
        resolved = path.resolve()
        root = allowed_local_media_path.resolve()
        if not resolved.is_relative_to(root):
            raise _image_error(f"image path {path} is outside the allowed folder {root}")
        if not resolved.is_file():
            raise _image_error(f"image file {path} does not exist")
        source, shown = resolved, str(path)
    try:
        with Image.open(source) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise _image_error(
                    f"the image ({shown}) is {image.width}x{image.height} pixels, more than {MAX_IMAGE_PIXELS:,}; "
                    "send a smaller image"
                )
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise _image_error(f"the image ({shown}) cannot be read as an image") from None


class _Streamer:
    """``generate`` streamer that feeds each new token to the request's :class:`Row`."""

    def __init__(self, row: Row) -> None:
        self.row = row
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        for token in value.view(-1).tolist():
            if self.row.finish is None:
                self.row.add(int(token))

    def end(self) -> None:
        pass


class HFVisionEngine(HFEngine):
    """Serve a vision-language model (and its LoRA adapters) with transformers in this process."""

    name = "transformers"
    accepts_images = True

    def __init__(self, *args: Any, allowed_local_media_path: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_local_media_path = (
            Path(allowed_local_media_path).expanduser() if allowed_local_media_path else None
        )
        self.processor: Any = None
        self._prompt_lock = threading.Lock()

    def start(self) -> None:
        import torch
        from transformers import AutoModelForImageTextToText

        from ...data.processor import load_processor

        torch_device = self.device.torch_device if self.device else "cpu"
        dtype = torch.float32
        if self.device is not None and self.device.type == "cuda" and self.device.bf16:
            dtype = torch.bfloat16
        self.processor = load_processor(self.model_dir, self.trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                self.model_dir, dtype=dtype, trust_remote_code=self.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise SwiftModelError(f"cannot load the model from {self.model_dir}: {str(exc).splitlines()[0]}") from None
        model.to(torch_device)
        if self.adapter_dirs:
            model = self._load_adapters(model)
        model.eval()
        self.model = model
        self.torch_device = torch_device
        config = model.config
        text_config = getattr(config, "text_config", None) or config
        limit = getattr(text_config, "max_position_embeddings", None) or 4096
        self.max_model_len = int(min(self._max_model_len or limit, limit))
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = eos_ids
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else next(iter(eos_ids), 0)
        self._thread = threading.Thread(target=self._loop, name=f"km-hf-vlm-{self.served_name}", daemon=True)
        self._thread.start()

    # -- prompts ---------------------------------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids (image tokens expanded) of a chat whose contents may hold ``image_url`` parts."""
        chat, images = [], []
        for message in messages:
            content = message.get("content")
            if content is None or isinstance(content, str):
                chat.append({"role": message["role"], "content": [{"type": "text", "text": content or ""}]})
                continue
            parts = []
            for part in content:
                if part.get("type") == "image_url":
                    images.append(open_image_url(part.get("url", ""), self.allowed_local_media_path))
                    parts.append({"type": "image"})
                elif part.get("type") == "text":
                    parts.append({"type": "text", "text": part.get("text") or ""})
                else:
                    raise ValueError(f"content parts of type '{part.get('type')}' are not supported by this model")
            chat.append({"role": message["role"], "content": parts})
        with self._prompt_lock:  # the processor is not thread-safe
            text = self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        prompt = VisionPrompt(inputs["input_ids"][0].tolist())
        prompt.inputs = dict(inputs)
        return prompt

    # -- generation ------------------------------------------------------------------------------
    def _run_batch(self, batch: list[RequestHandle]) -> None:
        for handle in batch:
            if not handle.cancelled.is_set() and not self._stop.is_set():
                self._generate_one(handle)

    def _generate_one(self, handle: RequestHandle) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        row = Row(handle, self.eos_ids, self.tokenizer, None)
        inputs = getattr(handle.prompt_ids, "inputs", None)
        if inputs is None:  # a plain token prompt (e.g. /v1/completions)
            ids = torch.tensor([list(handle.prompt_ids)], dtype=torch.long)
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        inputs = {k: v.to(self.torch_device) if hasattr(v, "to") else v for k, v in inputs.items()}
        stop = self._stop

        class _Until(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = row.finish is not None or handle.cancelled.is_set() or stop.is_set()
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        params = handle.params
        room = self.max_model_len - len(handle.prompt_ids)
        sampling: dict[str, Any] = {"do_sample": False}
        if not params.greedy:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
        with torch.random.fork_rng(devices=[]), torch.inference_mode(), self._adapter_context(handle.model):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            self.model.generate(
                **inputs,
                max_new_tokens=max(1, min(params.max_tokens, room)),
                streamer=_Streamer(row),
                stopping_criteria=StoppingCriteriaList([_Until()]),
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids),
                **sampling,
            )
        if handle.cancelled.is_set() and row.finish is None:
            return
        if row.finish is None:
            row.end("length")
        self._record(row, 1)

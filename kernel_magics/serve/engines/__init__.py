"""Inference engines behind one server interface.

``hf`` (transformers + peft, in this process) and ``vllm`` (vLLM's own OpenAI server in a child
process) ship now; engines that bring their own OpenAI server (SGLang, LMDeploy) fit the
:class:`~kernel_magics.serve.engines.base.ServingProcess` interface the vLLM engine uses.
"""

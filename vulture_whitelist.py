"""Names vulture cannot see used: a library, the Python data model or a name given as a string calls them.

`make lint` runs vulture over kernel_magics, tests and benchmarks (settings in pyproject.toml's
[tool.vulture]: decorators whose functions a framework registers, and pytest's names, are ignored there).
List a name here only with the caller that uses it; dead code is removed, not listed.
This file is parsed by vulture, never imported.
"""

# ruff: noqa: B018, F821
from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# -- the Python data model and IPython's display protocol --------------------------------------------
__getattr__  # kernel_magics/__init__.py: module __getattr__ (PEP 562) imports the public functions lazily
_.__signature__  # argspec.py, signatures.py: read by inspect.signature / help() on the generated callables
_.__class__  # argspec.py, search/__init__.py: a package made callable by swapping its module class
_._repr_pretty_  # search/refresh.py: IPython's pretty printer calls it to display a RefreshReport
cycle  # search/refresh.py: _repr_pretty_'s second argument, fixed by IPython's protocol

# -- names given as "module:attribute" strings (argspec.load, the method and engine registries) ------
show_text  # data/preview.py: the `%swift dataset` Command's terminal target (train/commands.py)
run_record  # train/methods/{sft,dpo,grpo,vlm}.py: each method's `record` hook in train/methods/registry.py
GRPOSamplesPanel  # widgets/grpo_samples.py: GRPO's `samples_panel` in train/methods/registry.py
SamplesPanel  # widgets/samples.py: vision SFT's `samples_panel` in train/methods/registry.py
pretrain_rows  # tests/test_methods.py: the test method's `prepare` hook, registered by string
pretrain_record  # tests/test_methods.py: the test method's `record` hook, registered by string
inproc_create  # tests/test_serve_engine_contract.py: the test engines' factory, availability and
inproc_unavailable  # honoured-fields hooks, registered by string
inproc_honoured_fields
child_create
child_stats
HONOURED  # classroom/vllm_engine.py: the vLLM class engine's request fields, loaded by classroom/service.py by string
_not_here  # tests/test_serve_engines.py: a test engine's availability check, registered by string
ServingProcess  # serve/engines/base.py: the child-process engine contract (typing Protocol), implemented
# structurally by engines/vllm.py and tests/test_serve_engine_contract.py

# -- attributes read by name (getattr / setattr with a computed name) ---------------------------------
min_source  # search/understanding.py: bound_size writes and reads the four *_source fields by name
max_source
min_active_source
max_active_source
_._build_finetune  # widgets/launcher.py: tab builders looked up as getattr(self, f"_build_{key}")
_._build_find
_._build_runs

# -- used by notebooks (vulture reads no .ipynb) -----------------------------------------------------
pirate_preferences  # lab_data.py: notebooks/03_preference_dpo_orpo.ipynb (EN / zh)
pirate_held_out_preferences  # lab_data.py: notebooks/03_preference_dpo_orpo.ipynb (EN / zh)
poem_rows  # lab_data.py: notebooks/07_writing_assistant.ipynb (EN / zh)
poem_preferences  # lab_data.py: notebooks/07_writing_assistant.ipynb (EN / zh)
poem_held_out_preferences  # lab_data.py: notebooks/07_writing_assistant.ipynb (EN / zh)

# -- transformers / TRL: Trainer callbacks and the objects they configure -----------------------------
_.on_log  # TrainerCallback hooks, called by transformers' Trainer (train/runtime/callbacks.py, benchmarks)
_.on_save
_.on_evaluate
_.should_training_stop  # TrainerControl flag the Trainer reads after each callback (callbacks.py, worker.py)
_.use_cache  # model.config.use_cache, read by the model's forward (train/model.py, benchmarks)
_.llm_int8_skip_modules  # BitsAndBytesConfig field read by transformers' quantizer (train/model.py)
_.data_collator  # the Trainer's collator, replaced for packed batches (train/methods/packing.py)
_.remove_unused_columns  # TRL SFTConfig fields read by SFTTrainer for image rows (train/methods/vlm.py)
_.dataset_kwargs

# -- tokenizers, ipywidgets, anywidget, Starlette, uvicorn, pydantic, xllamacpp ----------------------
_.pre_tokenizer  # tokenizers.Tokenizer pipeline stages, used when it encodes (testing.py)
_.post_processor
_.selected_index  # ipywidgets Tab / Accordion trait: which page is open (widgets/launcher*.py)
_.flex  # ipywidgets Layout trait, sent to the browser (widgets/launcher_forms.py)
buffers  # widgets/chat.py: third argument of anywidget's on_msg callback, fixed by its protocol
_.middleware_stack  # Starlette rebuilds the stack on the next request when it is None (engines/vllm_main.py)
_.should_exit  # uvicorn.Server flag its serve loop polls (serve/server.py)
parallel_tool_calls  # serve/protocol.py: OpenAI request field, accepted and validated by pydantic
owned_by  # serve/schema_doc.py: OpenAI response field, documented in /openapi.json
_.n_ctx  # xllamacpp CommonParams fields read by its server (tests/test_export_llamacpp.py, test_real_model.py)
_.n_threads
_.use_jinja

# -- pytest: fixtures requested for their effect, parametrized arguments -----------------------------
one_thread  # fixtures named in a test's arguments only for what they set up
online
bars_on
registered
student_environment  # tests/browser/test_classroom_student.py: the hub's environment, set before the lab starts
attempt  # tests/test_run_folders.py: @pytest.mark.parametrize repeats the race test
warmup_tokens  # tests/test_launcher.py: a dataclass field the launcher form reads by its name

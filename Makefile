# Two commands do all the set-up:  `make lab` opens the chapters, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install lab test lint benchmark notebooks clean train chat chat-web sync device-check web-install book

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
		echo "Python 3.10 or newer is needed, but '$(PYTHON)' is older: run e.g. 'make test PYTHON=python3.11'."; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -e .
	touch $@

install: $(VENV)/.installed

# The optional web group (requirements-web.txt: Jupyter Book, MathJax's files, Playwright), installed once,
# beside requirements.txt's pins, for `make book` and the real-browser tests.
$(VENV)/.web-installed: $(VENV)/.installed requirements-web.txt
	$(BIN)/python -m pip install -r requirements.txt -r requirements-web.txt
	touch $@

web-install: $(VENV)/.web-installed

# Jupyter refuses to start as root (containers, cloud VMs) unless told it is meant.
LAB_ROOT_FLAG = $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

# `make lab` opens the project (chapters/, solutions/); `make lab NB=chapters/ch04_gpt_model/ch04.ipynb` opens one notebook.
lab: install
	@if [ -n "$(NB)" ] && [ ! -e "$(NB)" ]; then \
		echo "NB=$(NB) does not exist: give a notebook's path, e.g. NB=chapters/ch04_gpt_model/ch04.ipynb (ls chapters/*/*.ipynb lists them)."; \
		exit 1; fi
	$(BIN)/jupyter lab $(LAB_ROOT_FLAG) --ServerApp.root_dir=. $(NB)

# One worker process per core, each on one thread (-n auto, OMP_NUM_THREADS=1): on 2 cores this takes
# about 70% of the time of one process on two threads. --dist loadfile keeps each notebook in one kernel.
# Two workers each on every core would oversubscribe the CPU and run training cells 3 to 6 times slower.
test: install
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest --nbval -n auto --dist loadfile chapters solutions tests

# Pretrain a GPT on the Austen novels (about 10 minutes on a laptop CPU), then talk to it.
train: install
	$(BIN)/python -m shared.train $(ARGS)

chat: install
	$(BIN)/python -m shared.chat runs/austen/checkpoint.safetensors $(ARGS)

# The same in a browser, streamed, with a Stop button: the shipped chapter 7 model unless ARGS names a checkpoint
# (`make chat-web ARGS=runs/austen/checkpoint.safetensors`; `ARGS="--help"` lists the options).
chat-web: install
	$(BIN)/python -m shared.chat_web $(ARGS)

# Before training on a GPU (NVIDIA or Apple's MPS): check that it gives the CPU's losses (a few seconds).
device-check: install
	$(BIN)/python -m shared.device_check $(ARGS)

lint: install
	$(BIN)/ruff check .

benchmark: install
	$(BIN)/python benchmarks/bench_tokenizers.py
	$(BIN)/python benchmarks/bench_gpt.py

clean:
	rm -rf $(VENV) *.egg-info _build

# The chapters and solutions as a static website, from the notebooks' stored outputs (nothing runs, nothing
# downloads; a second build redoes only what changed): open _build/html/index.html.
book: web-install
	$(BIN)/python tools/build_book.py

# Copy the finished components of shared/ into the notebook cells that show them
# (`make sync ARGS=--check` changes nothing and lists the cells that differ).
sync: install
	$(BIN)/python tools/sync_notebooks.py $(ARGS)

# Re-run every notebook top to bottom and store its outputs (do this before committing a notebook);
# it prints each one's wall time against its budget. `make notebooks ARGS=chapters/ch04_gpt_model/ch04.ipynb`
# re-runs only the notebooks named.
notebooks: install
	$(BIN)/python benchmarks/notebook_times.py --write $(ARGS)
